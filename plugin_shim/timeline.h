/*
 * timeline.h — the shim's side of the engine's timeline store (ld_shm_header in
 * livediff_shm.h): mapping it (I/O thread) and reading slots under the seqlock (audio thread).
 */
#ifndef LIVEDIFF_TIMELINE_H
#define LIVEDIFF_TIMELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "include/livediff_shm.h"

typedef struct ld_timeline {
    const ld_shm_header *header;
    size_t size;                /* bytes mapped: the file's size when it was mapped */
    int fd;                     /* kept open to notice the file shrinking (ld_timeline_intact) */
    uint32_t channels;
    uint32_t capacity;          /* slot_capacity_frames */
    uint32_t slot_count;
    const float *audio;         /* slot 0, channel 0 */
    uint32_t prefaulted[LD_SHM_MAX_SLOTS];  /* I/O thread: seq of each slot when its pages were touched */
    char name[64];
} ld_timeline;

/* A consistent snapshot of one READY slot's header. */
typedef struct ld_slot_view {
    uint32_t index;
    uint32_t seq;               /* even; the audio is valid while the slot's seq still equals it */
    int64_t start;
    uint32_t frames;
    uint32_t flags;             /* ld_window_flags */
    uint64_t window_id;
} ld_slot_view;

/* Map and validate a segment (read-only). On failure returns NULL and writes a sentence naming
 * what was wrong into error. Only names "/livediff-..." are accepted, and only a regular file
 * of this user, mode 0600, whose size is the header's total_bytes (opened non-blocking, so a
 * FIFO cannot hang the caller). [io-thread] */
ld_timeline *ld_timeline_map(const char *name, uint32_t sample_rate, char *error, size_t error_size);

/* False once the file is shorter than the mapping (reading past its end would raise SIGBUS):
 * the caller must stop using the mapping. Checked before every prefault; a file truncated
 * between this check and a read still faults, which only an engine of this user can do
 * (docs/reliability.md). [io-thread] */
bool ld_timeline_intact(const ld_timeline *timeline);

/* [io-thread] (only when no audio thread can still use it, see core.h) */
void ld_timeline_unmap(ld_timeline *timeline);

/* The winning slot (largest window_id) of `epoch` that covers sample `pos`, counting only slots
 * made for grid sequence *grid when grid is not NULL (offline: audio for this block's tempo
 * map). When none does, returns false and sets *next_start to the first covered sample after
 * pos (INT64_MAX if none), so callers know how long the gap is. [audio-thread] */
bool ld_timeline_find(const ld_timeline *timeline, uint32_t epoch, const uint32_t *grid, int64_t pos,
                      ld_slot_view *found, int64_t *next_start);

/* Copy `frames` frames starting at timeline sample `pos` (inside the slot) into
 * dst[c] + offset for c < channels. False if the engine rewrote the slot meanwhile (the copy
 * must be discarded). [audio-thread] */
bool ld_timeline_copy(const ld_timeline *timeline, const ld_slot_view *slot, int64_t pos, uint32_t frames,
                      float *const *dst, uint32_t offset, uint32_t channels);

/* Touch the pages of slots published since the last call, so the audio thread never takes a
 * page fault on first reading them. [io-thread] */
void ld_timeline_prefault(ld_timeline *timeline);

/* True when slots of `epoch` (made for *grid, when not NULL) cover every sample of
 * [pos, pos + frames). [audio-thread] */
bool ld_timeline_covers(const ld_timeline *timeline, uint32_t epoch, const uint32_t *grid, int64_t pos,
                        uint32_t frames);

#endif
