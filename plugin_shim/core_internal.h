/*
 * core_internal.h — the instance state shared by core.c (audio side) and io_thread.c.
 * Fields are grouped by which thread writes them; everything crossing threads is atomic.
 */
#ifndef LIVEDIFF_CORE_INTERNAL_H
#define LIVEDIFF_CORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "core.h"
#include "ring.h"
#include "timeline.h"

/* What the audio thread pushes into the ring per block; `frames` frames of planar input
 * (channels x frames floats) follow, then the sidechain in the same layout if has_sidechain. */
typedef struct ld_record {
    ld_position position;
    uint32_t mode;              /* ld_process_mode of the block */
    uint32_t frames;            /* 0 while the position stands still (stopped host) */
    uint32_t channels;
    uint32_t has_sidechain;
    uint32_t params_version;    /* ld_core.params_version when the block was processed */
} ld_record;

struct ld_core {
    /* Fixed at create. */
    char format[8];

    /* Any thread: parameters (double bits) and "changed since the engine heard" flag. */
    _Atomic uint64_t params[LD_PARAM_COUNT];
    _Atomic bool params_dirty;
    _Atomic uint32_t params_version;        /* bumped on every change: records carry it (ordering) */

    /* Main thread, read-only while prepared. */
    bool prepared;
    double sample_rate;
    uint32_t max_block, channels, declared_mode;
    uint32_t piece;             /* frames processed at once: min(max_block, LD_MAX_AUDIO_FRAMES) */
    double offline_timeout_s;
    bool infer_render;          /* LIVEDIFF_RENDER_FALLBACK is not "off" */
    uint64_t instance_id;       /* LD_KEY_INSTANCE: new on every prepare (one engine session each) */
    char endpoint[512];
    char endpoint_error[256];   /* non-empty: endpoint refused, the I/O thread does not connect */
    ld_ring ring;
    float *scratch;             /* wet[channels], zeros: (channels + 1) x piece floats, then fade */
    float *wet[LD_MAX_CHANNELS];
    float *zeros;
    float *fade;                /* cos of a quarter turn over fade_frames: the dry's fade-out after a preroll */
    uint32_t fade_frames;       /* the engine's seam: round(rate * LD_SEAM_MS / 1000) */
    void *zmq_context;          /* process-wide, NULL if it could not be created */
    pthread_t io_thread;
    _Atomic bool io_stop;

    /* Audio thread only. */
    ld_clock clock;
    ld_slot_view hold;          /* last slot played, for the "hold" underrun policy */
    const ld_timeline *hold_timeline;
    bool phase_known;           /* preroll_epoch is the epoch of the last piece */
    uint32_t preroll_epoch;
    bool in_preroll;            /* no generated audio played yet in this epoch (read_generated) */
    bool preroll_played;        /* ...and preroll frames were, up to preroll_next */
    int64_t preroll_next;
    bool xfade_active;          /* crossfading from the dry input into the first generated audio */
    uint32_t xfade_epoch;
    int64_t xfade_start;        /* timeline position where it began */
    int32_t xfade_entry;        /* index into fade[] there (the engine's fade-in continues), -1: a whole crossfade */
    float bypass_gain;          /* 0 = processed, 1 = dry; ramps over fade_frames towards the parameter */
    double late_engine_left_s;  /* offline: how much longer blocks may wait for a dead engine */

    /* Audio thread -> I/O thread. */
    _Atomic uint64_t underruns, offline_timeouts, dropped_frames;
    _Atomic uint32_t host_problems;         /* ld_host_problem bits not yet logged */
    _Atomic uint32_t last_epoch;
    _Atomic(ld_timeline *) reading;         /* hazard pointer: the mapping the audio thread uses */
    _Atomic uint64_t frames_processed;      /* progress, for the I/O thread's render inference */
    _Atomic uint64_t wait_ns;               /* time spent in offline waits (not the host's) */

    /* I/O thread only, kept across activations so a re-activated instance does not repeat itself. */
    char logged_text[256];                  /* last problem logged (logged once until it changes) */
    uint64_t logged_timeouts;
    double logged_timeouts_at;

    /* I/O thread -> audio thread (and stats). */
    _Atomic(ld_timeline *) published;       /* current mapping, NULL when none */
    _Atomic uint32_t engine_state;          /* ld_engine_state */
    _Atomic uint32_t latency;
    /* The host labels its blocks realtime but runs far faster than real time (a render without
     * clap.render, or a VST3 export labelled realtime): treat them as offline (io_thread.c). */
    _Atomic bool render_inferred;
    _Atomic uint64_t sessions;              /* WELCOMEs since prepare */
    _Atomic bool engine_launched;
};

/* The I/O thread's entry point (io_thread.c). [io-thread] */
void *ld_io_thread_main(void *core);

/* Process-wide ZeroMQ context, shared by all instances: acquire before starting an I/O
 * thread, release after joining it (the last release terminates it). [main-thread] */
void *ld_zmq_context_acquire(void);
void ld_zmq_context_release(void);

/* Whether an ipc endpoint's directory exists and is not a private directory of this user
 * (then another user could pose as the engine); writes a sentence saying so. [main-thread] or [io-thread] */
bool ld_endpoint_problem(const char *endpoint, char *out, size_t out_size);

/* Seconds on the monotonic clock (vDSO, no system call). [any-thread] */
double ld_now_s(void);

#endif
