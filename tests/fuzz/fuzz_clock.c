/*
 * fuzz_clock.c — libFuzzer target: the shim's clock (clock.c) fed whatever transport a host
 * reports, block after block. Every position it sends must be one the engine accepts: finite,
 * within the wire ranges of livediff_shm.h (plus what the blocks of one input can add), a
 * tempo and time signature the grid can use.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin_shim/clock.h"
#include "../../plugin_shim/include/livediff_shm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One block: a host transport, the frame count and the tempo parameter, straight from the bytes. */
typedef struct block {
    ld_host_transport host;
    uint8_t has_transport, sync_mode;
    uint16_t frames;
    double tempo_param;
} block;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ld_clock clock = {0};
    ld_clock_reset(&clock);
    double slack = 0;
    for (size_t at = 0; at + sizeof(block) <= size; at += sizeof(block)) {
        block b;
        memcpy(&b, data + at, sizeof b);
        double tempo = fmin(fmax(isnan(b.tempo_param) ? 120 : b.tempo_param, LD_TEMPO_MIN), LD_TEMPO_MAX);
        uint32_t frames = (uint32_t)b.frames + 1;
        ld_position p;
        ld_clock_advance(&clock, b.has_transport & 1 ? &b.host : NULL, tempo, b.sync_mode % 3, frames, 48000.0, &p);
        slack += frames;
        if (!isfinite(p.pos_beats) || !isfinite(p.tempo) || !isfinite(p.bar_start_beats) || !(p.tempo > 0)
            || fabs(p.pos_beats) > (double)(1 << LD_POS_BEATS_BITS) + slack * p.tempo / 60.0 / 48000.0 + 1
            || p.pos_samples < -((int64_t)1 << LD_POS_SAMPLES_BITS) - (int64_t)slack
            || p.pos_samples > ((int64_t)1 << LD_POS_SAMPLES_BITS) + (int64_t)slack
            || !isfinite(p.loop_start_beats) || !isfinite(p.loop_end_beats)
            || p.tsig_num < 1 || p.tsig_num > 64 || p.tsig_den < 1 || p.tsig_den > 64)
            abort();
    }
    return 0;
}
