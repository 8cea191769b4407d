/* pack.h — packing documents into training samples, as Colossal-LLaMA-2
 * prepares pre-training data: documents sorted by length, longest first, and
 * concatenated into samples of at most `cap` tokens (seq_len + 1). */
#ifndef LAMINA_PACK_H
#define LAMINA_PACK_H
#include <stdint.h>

/* First-fit decreasing: window = 0 gives exact first fit over all samples
 * (O(n log n), a max-tree over the samples' free room); window > 0 looks only
 * at the `window` most recently opened samples (O(n*window), worse packing on
 * large inputs). Every length must be in [1, cap]. Writes for each document the sample it goes to in
 * bin_of[i], and returns the number of samples. Documents inside a sample
 * keep the order in which they were placed (longest first). */
int64_t pack_docs(const int64_t *lens, int64_t n, int64_t cap, int window, int64_t *bin_of, int64_t *order);

#endif
