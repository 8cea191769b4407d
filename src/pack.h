/* pack.h — packing documents into training samples, as Colossal-LLaMA-2
 * prepares pre-training data: documents sorted by length, longest first, and
 * concatenated into samples of at most `cap` tokens (seq_len + 1). */
#ifndef LAMINA_PACK_H
#define LAMINA_PACK_H
#include <stdint.h>

/* First-fit decreasing over a window of the `window` most recently opened
 * samples (bounded work per document: O(n log n + n*window)). Every length
 * must be in [1, cap]. Writes for each document the sample it goes to in
 * bin_of[i], and returns the number of samples. Documents inside a sample
 * keep the order in which they were placed (longest first). */
int64_t pack_docs(const int64_t *lens, int64_t n, int64_t cap, int window, int64_t *bin_of, int64_t *order);

#endif
