/*
 * shm_visible.c — how long a window published by the engine (Python TimelineStore.publish)
 * takes to become visible to the shim's reader (plugin_shim/timeline.c).
 *
 *   shm_visible SEGMENT COUNT      (run by bench/shim_bench.py, which publishes epochs 1..COUNT)
 *
 * The publisher stores time.monotonic() (CLOCK_MONOTONIC) of the start of each publish()
 * in the slot's start_beat; the reader spins on ld_timeline_find() for the next epoch and
 * prints one latency in microseconds per window.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "timeline.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: shm_visible SEGMENT COUNT\n");
        return 2;
    }
    char error[256];
    ld_timeline *timeline = ld_timeline_map(argv[1], 48000, error, sizeof error);
    if (!timeline) {
        fprintf(stderr, "%s\n", error);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    unsigned count = (unsigned)atoi(argv[2]);
    for (uint32_t epoch = 1; epoch <= count; epoch++) {
        ld_slot_view slot;
        int64_t next;
        double deadline = now_s() + 5.0;
        while (!ld_timeline_find(timeline, epoch, NULL, 0, &slot, &next))
            if (now_s() > deadline) {
                fprintf(stderr, "epoch %u never became visible\n", epoch);
                return 1;
            }
        double seen = now_s();
        printf("%.3f\n", (seen - timeline->header->slots[slot.index].start_beat) * 1e6);
        fflush(stdout);
    }
    ld_timeline_unmap(timeline);
    return 0;
}
