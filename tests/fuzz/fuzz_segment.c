/*
 * fuzz_segment.c — libFuzzer target: the shim's validation and reading of a segment the
 * engine wrote (timeline.c), whatever its bytes. Each input becomes a real 0600 shared-memory
 * file, is mapped with ld_timeline_map (ASan + UBSan watch the header checks), and, if
 * accepted, is read the way the audio and I/O threads read it: find, copy, covers, prefault,
 * intact, at positions around every slot's start.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../plugin_shim/timeline.h"

#define RATE 48000
#define MAX_FRAMES 64
#define POS_LIMIT ((int64_t)1 << LD_POS_SAMPLES_BITS)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read [pos, pos + frames) as the audio thread does. */
static void read_at(const ld_timeline *timeline, uint32_t epoch, int64_t pos, uint32_t frames)
{
    static float left[MAX_FRAMES], right[MAX_FRAMES];
    float *const out[2] = {left, right};
    ld_slot_view slot;
    int64_t next;
    uint32_t grid = (uint32_t)pos;     /* offline reads count only slots of one grid sequence */
    if (ld_timeline_find(timeline, epoch, NULL, pos, &slot, &next)) {
        int64_t available = slot.start + slot.frames - pos;
        uint32_t n = available < frames ? (uint32_t)available : frames;
        ld_timeline_copy(timeline, &slot, pos, n, out, 0, 2);
    }
    ld_timeline_covers(timeline, epoch, &grid, pos, frames);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[64];
    snprintf(name, sizeof name, "/livediff-fuzz-%d", (int)getpid());
    int fd = shm_open(name, O_CREAT | O_RDWR | O_TRUNC, 0600);
    if (fd < 0)
        return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        shm_unlink(name);
        return 0;
    }
    close(fd);
    char error[256];
    ld_timeline *timeline = ld_timeline_map(name, RATE, error, sizeof error);
    shm_unlink(name);       /* the mapping outlives the name: an input that crashes leaves nothing in /dev/shm */
    if (timeline) {
        ld_timeline_prefault(timeline);
        for (uint32_t i = 0; i < timeline->slot_count; i++) {
            const ld_slot *s = &timeline->header->slots[i];
            /* positions the shim's clock can have (the wire range), near wherever the slot claims to be */
            int64_t start = s->start_sample < -POS_LIMIT ? -POS_LIMIT : s->start_sample > POS_LIMIT ? POS_LIMIT
                          : s->start_sample;
            for (int64_t delta = -2; delta <= 2; delta++)
                read_at(timeline, s->epoch, start + delta * 17, MAX_FRAMES);
        }
        ld_timeline_intact(timeline);
        ld_timeline_unmap(timeline);
    }
    return 0;
}
