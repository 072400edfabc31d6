/* timeline.c — see timeline.h. */
#include "timeline.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SLOT_START_LIMIT ((int64_t)1 << (LD_POS_SAMPLES_BITS + 1))

/* [io-thread] */
static bool valid_name(const char *name)
{
    size_t length = strlen(name);
    return strncmp(name, "/livediff-", 10) == 0 && length < sizeof(((ld_timeline *)0)->name)
        && strchr(name + 1, '/') == NULL;
}

/* Header checks: magic and layout first, then that every slot's audio lies inside the file.
 * Every bound is written so that it cannot overflow, whatever the engine put there. [io-thread] */
static bool valid_header(const ld_shm_header *h, size_t file_size, uint32_t sample_rate, char *error, size_t error_size)
{
    if (h->magic != LD_SHM_MAGIC || h->layout_version != LD_SHM_LAYOUT_VERSION) {
        snprintf(error, error_size, "magic 0x%08x layout %u; this shim reads magic 0x%08x layout %u",
                 h->magic, h->layout_version, (unsigned)LD_SHM_MAGIC, (unsigned)LD_SHM_LAYOUT_VERSION);
        return false;
    }
    if (h->header_bytes != sizeof(ld_shm_header) || h->slot_count == 0 || h->slot_count > LD_SHM_MAX_SLOTS
        || h->channels == 0 || h->channels > LD_MAX_CHANNELS || h->slot_capacity_frames == 0) {
        snprintf(error, error_size, "header_bytes %u (want %zu), slot_count %u (allowed 1..%d), channels %u "
                 "(allowed 1..%d), slot_capacity_frames %u", h->header_bytes, sizeof(ld_shm_header),
                 h->slot_count, LD_SHM_MAX_SLOTS, h->channels, LD_MAX_CHANNELS, h->slot_capacity_frames);
        return false;
    }
    /* at most 32 x 2 x (2^32 - 1) x 4 bytes: no overflow in 64 bits */
    uint64_t audio_bytes = (uint64_t)h->slot_count * h->channels * h->slot_capacity_frames * sizeof(float);
    if (h->audio_offset < sizeof(ld_shm_header) || h->audio_offset % sizeof(float) != 0
        || h->audio_offset > file_size || audio_bytes > file_size - h->audio_offset || h->total_bytes != file_size) {
        snprintf(error, error_size, "audio [%llu, +%llu) or total_bytes %llu outside the %zu-byte segment",
                 (unsigned long long)h->audio_offset, (unsigned long long)audio_bytes,
                 (unsigned long long)h->total_bytes, file_size);
        return false;
    }
    if (h->sample_rate != sample_rate) {
        snprintf(error, error_size, "sample rate %u, the host runs at %u", h->sample_rate, sample_rate);
        return false;
    }
    return true;
}

/* What the file behind fd is, if it is not a segment we may map: a regular file of ours,
 * private to us, at least a header long. NULL if it is fine. [io-thread] */
static const char *file_problem(int fd, struct stat *info)
{
    if (fstat(fd, info) != 0)
        return "cannot be inspected (fstat failed)";
    if (!S_ISREG(info->st_mode))
        return "is not a regular file";
    if (info->st_uid != geteuid())
        return "belongs to another user";
    if (info->st_mode & 077)
        return "is readable or writable by other users (allowed: mode 0600)";
    if (info->st_size < (off_t)sizeof(ld_shm_header))
        return "is smaller than its header";
    return NULL;
}

ld_timeline *ld_timeline_map(const char *name, uint32_t sample_rate, char *error, size_t error_size)
{
    if (!valid_name(name)) {
        snprintf(error, error_size, "segment name '%s' refused: allowed are names '/livediff-...' without '/'", name);
        return NULL;
    }
    /* Non-blocking: a FIFO planted under the name must not block the I/O thread (glibc adds
     * O_NOFOLLOW, so a symlink is refused too). */
    int fd = shm_open(name, O_RDONLY | O_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(error, error_size, "shm_open('%s') failed", name);
        return NULL;
    }
    struct stat info;
    const char *problem = file_problem(fd, &info);
    void *base = problem ? MAP_FAILED : mmap(NULL, (size_t)info.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        snprintf(error, error_size, "segment '%s' %s", name, problem ? problem : "cannot be mapped");
        close(fd);
        return NULL;
    }
    const ld_shm_header *h = base;
    ld_timeline *timeline = calloc(1, sizeof *timeline);
    if (!timeline || !valid_header(h, (size_t)info.st_size, sample_rate, error, error_size)) {
        munmap(base, (size_t)info.st_size);
        close(fd);
        free(timeline);
        return NULL;
    }
    *timeline = (ld_timeline){
        .header = h, .size = (size_t)info.st_size, .fd = fd, .channels = h->channels,
        .capacity = h->slot_capacity_frames, .slot_count = h->slot_count,
        .audio = (const float *)((const uint8_t *)base + h->audio_offset),
    };
    snprintf(timeline->name, sizeof timeline->name, "%s", name);
    return timeline;
}

bool ld_timeline_intact(const ld_timeline *timeline)
{
    struct stat info;
    return fstat(timeline->fd, &info) == 0 && info.st_size >= (off_t)timeline->size;
}

void ld_timeline_unmap(ld_timeline *timeline)
{
    if (!timeline)
        return;
    munmap((void *)timeline->header, timeline->size);
    close(timeline->fd);
    free(timeline);
}

/* [any-thread] (audio thread reading slots, I/O thread prefaulting) */
static uint32_t load_seq(const ld_slot *slot, memory_order order)
{
    return atomic_load_explicit((_Atomic uint32_t *)&slot->seq, order);
}

/* Snapshot a slot's header under the seqlock; false if it is being written or not READY. [audio-thread] */
static bool snapshot(const ld_timeline *timeline, uint32_t index, uint32_t *epoch, uint32_t *grid, ld_slot_view *view)
{
    const ld_slot *slot = &timeline->header->slots[index];
    uint32_t seq = load_seq(slot, memory_order_acquire);
    if (seq & 1)
        return false;
    uint32_t state = slot->state;
    *epoch = slot->epoch;
    *grid = slot->grid;
    *view = (ld_slot_view){.index = index, .seq = seq, .start = slot->start_sample,
                           .frames = slot->frames, .flags = slot->flags, .window_id = slot->window_id};
    atomic_thread_fence(memory_order_acquire);
    /* A start beyond the wire range is an engine bug: refusing it keeps start + frames and
     * pos - start far from overflowing. */
    return load_seq(slot, memory_order_relaxed) == seq && state == LD_SLOT_READY
        && view->frames <= timeline->capacity && view->start >= -SLOT_START_LIMIT && view->start <= SLOT_START_LIMIT;
}

bool ld_timeline_find(const ld_timeline *timeline, uint32_t epoch, const uint32_t *grid, int64_t pos,
                      ld_slot_view *found, int64_t *next_start)
{
    bool hit = false;
    *next_start = INT64_MAX;
    for (uint32_t i = 0; i < timeline->slot_count; i++) {
        ld_slot_view view;
        uint32_t slot_epoch, slot_grid;
        if (!snapshot(timeline, i, &slot_epoch, &slot_grid, &view) || slot_epoch != epoch || view.frames == 0
            || (grid && slot_grid != *grid))
            continue;
        if (view.start <= pos && pos < view.start + view.frames) {
            if (!hit || view.window_id > found->window_id)
                *found = view;
            hit = true;
        } else if (view.start > pos && view.start < *next_start) {
            *next_start = view.start;
        }
    }
    return hit;
}

bool ld_timeline_copy(const ld_timeline *timeline, const ld_slot_view *slot, int64_t pos, uint32_t frames,
                      float *const *dst, uint32_t offset, uint32_t channels)
{
    size_t from = (size_t)(pos - slot->start);
    for (uint32_t c = 0; c < channels; c++) {
        uint32_t source_channel = c < timeline->channels ? c : timeline->channels - 1;
        const float *src = timeline->audio
                         + ((size_t)slot->index * timeline->channels + source_channel) * timeline->capacity + from;
        memcpy(dst[c] + offset, src, frames * sizeof(float));
    }
    atomic_thread_fence(memory_order_acquire);
    return load_seq(&timeline->header->slots[slot->index], memory_order_relaxed) == slot->seq;
}

bool ld_timeline_covers(const ld_timeline *timeline, uint32_t epoch, const uint32_t *grid, int64_t pos,
                        uint32_t frames)
{
    int64_t end = pos + frames;
    while (pos < end) {
        ld_slot_view view;
        int64_t next_start;
        if (!ld_timeline_find(timeline, epoch, grid, pos, &view, &next_start))
            return false;
        pos = view.start + view.frames;
    }
    return true;
}

void ld_timeline_prefault(ld_timeline *timeline)
{
    for (uint32_t i = 0; i < timeline->slot_count; i++) {
        uint32_t seq = load_seq(&timeline->header->slots[i], memory_order_acquire);
        if ((seq & 1) || seq == timeline->prefaulted[i])
            continue;
        timeline->prefaulted[i] = seq;
        for (uint32_t c = 0; c < timeline->channels; c++) {
            const volatile uint8_t *bytes = (const volatile uint8_t *)(timeline->audio
                                          + ((size_t)i * timeline->channels + c) * timeline->capacity);
            uint32_t frames = timeline->header->slots[i].frames;   /* only written pages: holes cost memory */
            size_t size = (size_t)(frames < timeline->capacity ? frames : timeline->capacity) * sizeof(float);
            for (size_t at = 0; at < size; at += 4096)
                (void)bytes[at];
        }
    }
}
