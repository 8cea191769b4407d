/* eval_out.c — the table of `lamina eval` on stdout (rank 0); the JSON's
 * numbers. */
#include "eval.h"
#include "common.h"
#include <math.h>
#include <stdio.h>

json_t *eval_num(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}

static double num(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

void eval_table_mc(const char *file, json_t *r) {
    lm_log("mc:%s  %lld test items, %.2f s (%.1f questions/s, %.0f tokens/s)\n", file,
           (long long)json_integer_value(json_object_get(r, "n_items")), num(r, "seconds"), num(r, "questions_per_s"),
           num(r, "tokens_per_s"));
    lm_log("  %-32s %5s %8s %8s\n", "subject", "lang", "letter", "loglik");
    json_t *by = json_object_get(r, "by_subject"), *byl = json_object_get(r, "by_subject_loglik"),
           *lang = json_object_get(r, "language");
    const char *k;
    json_t *v;
    json_object_foreach(by, k, v) {
        lm_log("  %-32s %5s %8.4f %8.4f\n", k, json_string_value(json_object_get(lang, k)), json_number_value(v),
               num(byl, k));
    }
    lm_log("  %-32s %5s %8.4f %8.4f\n", "all (micro average)", "", num(r, "accuracy"), num(r, "accuracy_loglik"));
}

void eval_table_ppl(const char *file, json_t *r) {
    lm_log("ppl:%s  %lld target tokens, %.2f s (%.0f tokens/s)\n", file,
           (long long)json_integer_value(json_object_get(r, "tokens")), num(r, "seconds"), num(r, "tokens_per_s"));
    lm_log("  %-32s %10s %10s %8s %10s %10s\n", "category", "loss", "ppl", "bpb", "tokens", "bytes");
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(r, "by_category"), k, v) {
        lm_log("  %-32s %10.4f %10.3f %8.4f %10lld %10lld\n", k, num(v, "loss"), num(v, "ppl"), num(v, "bpb"),
               (long long)json_integer_value(json_object_get(v, "tokens")),
               (long long)json_integer_value(json_object_get(v, "bytes")));
    }
    lm_log("  %-32s %10.4f %10.3f %8.4f %10lld %10lld\n", "all", num(r, "loss"), num(r, "ppl"), num(r, "bpb"),
           (long long)json_integer_value(json_object_get(r, "tokens")),
           (long long)json_integer_value(json_object_get(r, "bytes")));
}
