/*
 * clock.h — the song position of each block, computed on the audio thread.
 *
 * Follows the host while it reports playing; runs its own sample clock (at the tempo_bpm
 * parameter) when the host never reported playing or sync_mode is free; stands still when a
 * host that played has stopped. Bumps the epoch on every discontinuity, never on tempo. A
 * sync_mode change onto the own clock continues from the current position; one that moves the
 * position (onto the host's) is marked LD_TRANSPORT_SYNC_SWITCH, so it is not taken for a host
 * that jumps.
 * All functions are pure and [audio-thread] (no allocation, locks or system calls).
 */
#ifndef LIVEDIFF_CLOCK_H
#define LIVEDIFF_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

/* What a host says about its transport at the first frame of a block (format-independent). */
enum ld_host_flags {
    LD_HOST_PLAYING = 1,
    LD_HOST_HAS_TEMPO = 2,
    LD_HOST_HAS_BEATS = 4,      /* pos_beats valid */
    LD_HOST_HAS_SAMPLES = 8,    /* pos_samples valid */
    LD_HOST_HAS_TSIG = 16,
    LD_HOST_HAS_BAR = 32,       /* bar_start_beats valid (still checked, see BRIEF §1b) */
    LD_HOST_LOOP_ACTIVE = 64
};

typedef struct ld_host_transport {
    uint32_t flags;             /* ld_host_flags */
    double tempo;
    double pos_beats;
    int64_t pos_samples;
    double bar_start_beats;
    int32_t tsig_num, tsig_den;
    double loop_start_beats, loop_end_beats;
} ld_host_transport;

/* Garbage the host sent (reported to the I/O thread, which logs it). */
enum ld_host_problem {
    LD_HOST_BAD_TEMPO = 1,
    LD_HOST_BAD_TSIG = 2,
    LD_HOST_BAD_POSITION = 4
};

/* The position of one block, as sent to the engine (ld_transport_flags in `flags`). */
typedef struct ld_position {
    uint32_t epoch;
    uint32_t grid;              /* LD_KEY_GRID: bumped when epoch, tempo, meter or loop differ from the last block */
    uint32_t flags;
    double tempo;
    int64_t pos_samples;
    double pos_beats;
    double bar_start_beats;
    uint32_t tsig_num, tsig_den;
    double loop_start_beats, loop_end_beats;
} ld_position;

typedef struct ld_clock {
    uint32_t epoch;
    int source;                 /* where the previous block's position came from (clock.c) */
    bool host_has_played;
    int64_t next_samples;       /* where the next block continues if nothing jumps */
    double next_beats;
    uint32_t tsig_num, tsig_den;
    double host_tempo;          /* last sane host tempo, 0 if none yet */
    ld_position last;           /* the previous block's position (grid changes are counted against it) */
    int sync_mode;              /* of the previous block, -1 after reset */
} ld_clock;

/* Start over: own clock at 0, new epoch (and grid). [audio-thread] (or [main-thread] while not processing) */
void ld_clock_reset(ld_clock *clock);

/* The position of a block of `frames` frames. `host` may be NULL (no transport).
 * Returns ld_host_problem bits for garbage it ignored. [audio-thread] */
uint32_t ld_clock_advance(ld_clock *clock, const ld_host_transport *host, double tempo_param,
                          int sync_mode, uint32_t frames, double sample_rate, ld_position *out);

#endif
