/* sde_events.h — the software-defined events lamina publishes to PAPI as
 * sde:::LAMINA::NAME: name, PAPI_SDE type and description, one line each.
 * One list for the binary (src/obs/sde.c, live counters) and for
 * build/liblamina-sde.so (the same file built with LM_SDE_HOOK_ONLY, so that
 * papi_native_avail lists them; see sde.h).
 *
 * Every counter is monotone (PAPI_SDE_DELTA: a reader sees the growth since
 * its PAPI_start). TOKENS, MODEL_FLOPS and STEPS describe the job (the same
 * value on every rank); the byte counters are this rank's own. */
#ifndef LAMINA_SDE_EVENTS_H
#define LAMINA_SDE_EVENTS_H

/* X(ID, PAPI_SDE type, description) */
#define LM_SDE_EVENTS(X)                                                                                           \
    X(TOKENS, PAPI_SDE_long_long,                                                                                  \
      "Training tokens of the global batch (targets, padding excluded), summed over optimizer steps; "            \
      "the same on every rank")                                                                                    \
    X(MODEL_FLOPS, PAPI_SDE_double,                                                                                \
      "Model FLOPs of the global batch (tokens x 6N + 12 n_layers dim seq_len, PaLM/Megatron), summed over "       \
      "steps; a double (read the 64 bits as one); the same on every rank")                                        \
    X(STEPS, PAPI_SDE_long_long, "Optimizer steps done by this run")                                              \
    X(BYTES_ALLREDUCE, PAPI_SDE_long_long,                                                                         \
      "Payload bytes this rank passed to all-reduce operations (gradients, norms, losses)")                       \
    X(BYTES_REDUCE_SCATTER, PAPI_SDE_long_long,                                                                    \
      "Payload bytes (all blocks) this rank passed to reduce-scatter operations (ZeRO-1/2 gradients, "            \
      "sequence parallelism)")                                                                                     \
    X(BYTES_ALLGATHER, PAPI_SDE_long_long,                                                                         \
      "Payload bytes (all blocks) this rank passed to all-gather operations (ZeRO-1/2 weights, sequence "         \
      "parallelism)")                                                                                              \
    X(BYTES_P2P, PAPI_SDE_long_long, "Bytes this rank sent or received point to point (pipeline activations)")    \
    X(BYTES_H2D, PAPI_SDE_long_long,                                                                               \
      "Bytes this rank copied from host to device memory through the device interface (to_device, upload_f32)")   \
    X(BYTES_D2H, PAPI_SDE_long_long,                                                                               \
      "Bytes this rank copied from device to host memory through the device interface (to_host, download_f32)")   \
    X(CKPT_BYTES_WRITTEN, PAPI_SDE_long_long,                                                                      \
      "float32 bytes of the checkpoint pieces this rank handed to the writer (weights and moments)")              \
    X(CKPT_BYTES_READ, PAPI_SDE_long_long, "float32 bytes of the checkpoint pieces this rank read")

#endif
