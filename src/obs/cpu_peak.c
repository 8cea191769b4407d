/* cpu_peak.c — the CPU's clock (cpufreq or /proc/cpuinfo) and vector unit,
 * multiplied out to a peak fp32 FLOP/s (cpu_peak.h). */
#include "cpu_peak.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Clock in Hz from cpufreq's cpuinfo_max_freq (kHz); 0 if absent. */
static double clock_from_cpufreq(void) {
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "r");
    if (!f) return 0.0;
    double khz = 0.0;
    if (fscanf(f, "%lf", &khz) != 1 || !(khz > 0.0)) khz = 0.0;
    fclose(f);
    return khz * 1e3;
}

/* Clock in Hz from /proc/cpuinfo: the largest "cpu MHz" line, else the
 * "@ X.XXGHz" of "model name"; 0 if neither is there. */
static double clock_from_cpuinfo(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return 0.0;
    char line[512];
    double best_mhz = 0.0, model_ghz = 0.0;
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        if (strncmp(line, "cpu MHz", 7) == 0) {
            double mhz = strtod(colon + 1, NULL);
            if (mhz > best_mhz) best_mhz = mhz;
        } else if (strncmp(line, "model name", 10) == 0 && model_ghz == 0.0) {
            char *at = strchr(colon, '@');
            if (at) {
                char *end = NULL;
                double ghz = strtod(at + 1, &end);
                while (end && *end == ' ') end++;
                if (end && strncmp(end, "GHz", 3) == 0 && ghz > 0.0) model_ghz = ghz;
            }
        }
    }
    fclose(f);
    if (best_mhz > 0.0) return best_mhz * 1e6;
    return model_ghz * 1e9;
}

/* Peak = threads x clock x fp32 FLOP/cycle. FLOP/cycle per core = 2 FMA
 * pipes x (vector width / 32 bit) x 2 (an FMA is 2 FLOPs): AVX-512 2x16x2=64
 * (assumes two 512-bit FMA pipes), AVX2+FMA 2x8x2=32; without FMA, one add
 * and one mul pipe: AVX 2x8=16, SSE2 2x4=8. */
double metrics_cpu_peak_flops(int threads, char *desc, size_t desclen) {
    if (threads < 1) threads = 1;
    const char *unknown = "";
    double hz = clock_from_cpufreq();
    if (!(hz > 0.0)) hz = clock_from_cpuinfo();
    if (!(hz > 0.0)) {
        hz = 2.0e9;
        unknown = " (clock unknown, assumed)";
    }
    __builtin_cpu_init();
    int fpc;
    const char *isa;
    if (__builtin_cpu_supports("avx512f")) {
        fpc = 64;
        isa = "AVX-512, two 512-bit FMA pipes assumed";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        fpc = 32;
        isa = "AVX2+FMA";
    } else if (__builtin_cpu_supports("avx")) {
        fpc = 16;
        isa = "AVX";
    } else {
        fpc = 8;
        isa = "SSE2";
    }
    if (desc && desclen > 0)
        snprintf(desc, desclen, "%d thread%s x %.3f GHz%s x %d FLOP/cycle (%s)", threads,
                 threads == 1 ? "" : "s", hz / 1e9, unknown, fpc, isa);
    return (double)threads * hz * (double)fpc;
}


