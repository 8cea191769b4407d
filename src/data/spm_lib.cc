// spm_lib.cc — the thin C wrapper over SentencePiece's C++ API (spm_lib.h,
// spm_train.h): the only C++ in lamina. Every entry point catches every
// exception, so none crosses into C; encoding and decoding are the
// library's own (ids and text exactly SentencePiece's).
#include "spm_lib.h"
#include "spm_train.h"
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <unistd.h>
#include <unordered_map>
#include <vector>

// From common.h, which is C only (_Noreturn): lamina's allocator.
extern "C" void *lm_alloc(size_t bytes);
extern "C" void lm_free(void *p);

struct spm_lib {
    sentencepiece::SentencePieceProcessor sp;
};

static void set_err(char *err, size_t errlen, const char *what, const char *msg) {
    if (err && errlen) snprintf(err, errlen, "%s%s", what, msg);
}

extern "C" spm_lib *spm_lib_load(const void *buf, size_t len, char *err, size_t errlen) {
    try {
        std::unique_ptr<spm_lib> s(new spm_lib);
        auto st = s->sp.LoadFromSerializedProto(std::string_view(static_cast<const char *>(buf), len));
        if (!st.ok()) {
            set_err(err, errlen, "SentencePiece refuses it: ", st.ToString().c_str());
            return nullptr;
        }
        return s.release();
    } catch (const std::exception &e) {
        set_err(err, errlen, "SentencePiece failed: ", e.what());
    } catch (...) {
        set_err(err, errlen, "SentencePiece failed", "");
    }
    return nullptr;
}

extern "C" void spm_lib_free(spm_lib *s) { delete s; }

extern "C" int spm_lib_encode(const spm_lib *s, const char *text, size_t n, int32_t **ids, size_t *n_ids, char *err,
                              size_t errlen) {
    try {
        std::vector<int> v;
        auto st = s->sp.Encode(std::string_view(text, n), &v);
        if (!st.ok()) {
            set_err(err, errlen, "SentencePiece encode: ", st.ToString().c_str());
            return 1;
        }
        int32_t *o = static_cast<int32_t *>(lm_alloc(sizeof(int32_t) * (v.size() ? v.size() : 1)));
        for (size_t i = 0; i < v.size(); i++) o[i] = v[i];
        *ids = o;
        *n_ids = v.size();
        return 0;
    } catch (const std::exception &e) {
        set_err(err, errlen, "SentencePiece encode failed: ", e.what());
    } catch (...) {
        set_err(err, errlen, "SentencePiece encode failed", "");
    }
    return 1;
}

extern "C" int spm_lib_decode(const spm_lib *s, const int32_t *ids, size_t n, char **text, size_t *len, char *err,
                              size_t errlen) {
    try {
        std::vector<int> v(ids, ids + n);
        std::string out;
        auto st = s->sp.Decode(v, &out);
        if (!st.ok()) {
            set_err(err, errlen, "SentencePiece decode: ", st.ToString().c_str());
            return 1;
        }
        char *o = static_cast<char *>(lm_alloc(out.size() + 1));
        memcpy(o, out.data(), out.size());
        o[out.size()] = 0;
        *text = o;
        *len = out.size();
        return 0;
    } catch (const std::exception &e) {
        set_err(err, errlen, "SentencePiece decode failed: ", e.what());
    } catch (...) {
        set_err(err, errlen, "SentencePiece decode failed", "");
    }
    return 1;
}

extern "C" int spm_lib_piece_size(const spm_lib *s) { return s->sp.GetPieceSize(); }
extern "C" int spm_lib_piece_to_id(const spm_lib *s, const char *piece, size_t len) {
    try {
        return s->sp.PieceToId(std::string_view(piece, len));
    } catch (...) {
        return -1;
    }
}
extern "C" int spm_lib_bos_id(const spm_lib *s) { return s->sp.bos_id(); }
extern "C" int spm_lib_eos_id(const spm_lib *s) { return s->sp.eos_id(); }
extern "C" int spm_lib_unk_id(const spm_lib *s) { return s->sp.unk_id(); }
extern "C" int spm_lib_pad_id(const spm_lib *s) { return s->sp.pad_id(); }

// The training sentences: every line of every file, in order (a line
// without its '\n'), read as the trainer asks for them.
namespace {
class FileLines : public sentencepiece::SentenceIterator {
  public:
    FileLines(const char *const *files, int n, spm_train_progress_fn cb, void *ctx)
        : files_(files, files + n), cb_(cb), ctx_(ctx) {
        Advance();
    }
    bool done() const override { return done_; }
    void Next() override { Advance(); }
    const std::string &value() const override { return line_; }
    sentencepiece::util::Status status() const override { return status_; }

  private:
    void Advance() {
        while (!done_) {
            if (in_.is_open() && std::getline(in_, line_)) {
                bytes_ += (int64_t)line_.size() + 1;
                if (cb_ && bytes_ - told_ >= (1 << 20)) cb_(ctx_, told_ = bytes_);
                return;
            }
            if (in_.is_open()) {
                if (in_.bad()) {
                    Fail("read error");
                    return;
                }
                in_.close();
            }
            if (next_ == files_.size()) {
                done_ = true;
                return;
            }
            name_ = files_[next_++];
            in_.open(name_, std::ios::binary);
            if (!in_.is_open()) {
                Fail("cannot open");
                return;
            }
        }
    }
    void Fail(const char *why) {
        status_ = sentencepiece::util::Status(sentencepiece::util::StatusCode::kNotFound, name_ + ": " + why);
        done_ = true;
    }
    std::vector<std::string> files_;
    size_t next_ = 0;
    std::ifstream in_;
    std::string name_, line_;
    bool done_ = false;
    sentencepiece::util::Status status_;
    spm_train_progress_fn cb_;
    void *ctx_;
    int64_t bytes_ = 0, told_ = 0;
};
} // namespace

extern "C" int spm_train(const char *const *files, int n_files, int vocab_size, const char *model_out,
                         const char *extra_options, spm_train_progress_fn progress, void *ctx, char *err,
                         size_t errlen) {
    try {
        std::unordered_map<std::string, std::string> kw;
        if (extra_options) {
            std::istringstream is(extra_options);
            std::string tok;
            while (is >> tok) {
                size_t eq = tok.find('=');
                if (eq == std::string::npos || eq == 0) {
                    set_err(err, errlen, "vocab train: option not key=value: ", tok.c_str());
                    return 2;
                }
                kw[tok.substr(0, eq)] = tok.substr(eq + 1);
            }
        }
        kw["vocab_size"] = std::to_string(vocab_size);
        // sentences come from the iterator, the model back in memory
        FileLines it(files, n_files, progress, ctx);
        std::string model;
        auto st = sentencepiece::SentencePieceTrainer::Train(kw, &it, &model);
        if (!st.ok()) {
            set_err(err, errlen, "vocab train: SentencePiece: ", st.ToString().c_str());
            return 2;
        }
        std::string tmp = std::string(model_out) + ".tmp";
        FILE *f = fopen(tmp.c_str(), "wb");
        bool ok = f && fwrite(model.data(), 1, model.size(), f) == model.size();
        if (f && fflush(f)) ok = false;
        if (f && fsync(fileno(f))) ok = false;
        if (f && fclose(f)) ok = false;
        if (!ok || rename(tmp.c_str(), model_out)) {
            std::string m = std::string(model_out) + ": cannot write: " + strerror(errno);
            remove(tmp.c_str());
            set_err(err, errlen, "vocab train: ", m.c_str());
            return 1;
        }
        return 0;
    } catch (const std::exception &e) {
        set_err(err, errlen, "vocab train failed: ", e.what());
    } catch (...) {
        set_err(err, errlen, "vocab train failed", "");
    }
    return 1;
}
