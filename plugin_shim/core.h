/*
 * core.h — the format-independent shim: what the VST3 and CLAP front-ends call.
 *
 * A tiny realtime surface in the spirit of anira: prepare() before processing (allocates,
 * starts the I/O thread that talks to the engine), process() per block (realtime-safe unless
 * the block is offline), release() after, get_latency() any time. Everything that touches
 * ZeroMQ, msgpack or the shared-memory mapping lives on the I/O thread (io_thread.c).
 */
#ifndef LIVEDIFF_CORE_H
#define LIVEDIFF_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "include/livediff_shm.h"
#include "params.h"

typedef struct ld_core ld_core;

/* A parameter change at a frame of the block (VST3 automation points, CLAP param events). */
typedef struct ld_param_event {
    uint32_t offset;                    /* frame where the value takes effect; >= frames: at the end */
    uint32_t id;                        /* ld_param */
    double plain;
} ld_param_event;

/* Events a front-end passes per block; more are applied at the block start, in order. */
enum { LD_MAX_BLOCK_EVENTS = 128 };

/* One block of audio and its transport, as a front-end saw it. */
typedef struct ld_audio_block {
    uint32_t frames;                    /* may be 0: only the events are applied */
    uint32_t mode;                      /* ld_process_mode of this call (hosts switch per call) */
    const ld_host_transport *transport; /* NULL: the host gives no transport */
    const float *const *input;          /* main input; NULL or 0 channels = silence */
    uint32_t input_channels;
    const float *const *sidechain;      /* NULL or 0 channels when the host gives none */
    uint32_t sidechain_channels;
    float *const *output;               /* may alias input (in-place hosts) */
    uint32_t output_channels;
    const ld_param_event *events;       /* sorted by offset; each piece runs with the values at its start */
    uint32_t event_count;
} ld_audio_block;

/* Whether an engine is answering (set by the I/O thread). */
enum ld_engine_state { LD_ENGINE_CONNECTING = 0, LD_ENGINE_ALIVE = 1, LD_ENGINE_DEAD = 2 };

/* The block between the markers is also read by cffi (tests/host/clap_host.py). */
/* LIVEDIFF_CDEF_BEGIN */
typedef struct ld_core_stats {
    uint64_t underruns;         /* blocks played (partly) without generated audio */
    uint64_t offline_timeouts;  /* offline waits that gave up and emitted silence */
    uint64_t dropped_frames;    /* input frames lost because the ring to the I/O thread was full */
    uint64_t sessions;          /* engine sessions opened (WELCOMEs) since prepare: 1 = never reconnected */
    uint32_t engine_state;      /* ld_engine_state */
    uint32_t epoch;             /* transport epoch of the last block */
    uint32_t render_inferred;   /* 1 while realtime-labelled blocks are treated as offline (fast host) */
    uint32_t engine_launched;   /* 1 when this instance started an engine (auto-launch) */
} ld_core_stats;
/* LIVEDIFF_CDEF_END */

/* format: "vst3" | "clap" | "harness" (sent in HELLO). NULL on allocation failure. [main-thread] */
ld_core *ld_core_create(const char *format);

/* Releases first if still prepared. [main-thread] */
void ld_core_destroy(ld_core *core);

/* Whether the engine runs at this host rate (ld_sample_rate). [any-thread] */
bool ld_core_rate_supported(double sample_rate);

/* Allocate buffers, start the own clock at 0 and the I/O thread (which connects to the engine).
 * Blocks of any size are processed in pieces of at most LD_MAX_AUDIO_FRAMES (and max_block), so
 * memory does not grow with max_block. `channels` is 1..LD_MAX_CHANNELS; the rate must be
 * supported. `mode` is the host's declared ld_process_mode (each block still says its own).
 * Cheap and idempotent: prepare on a prepared core releases first. [main-thread] */
bool ld_core_prepare(ld_core *core, double sample_rate, uint32_t max_block, uint32_t channels, uint32_t mode);

/* Say BYE, stop the I/O thread (bounded: never waits on a dead engine), unmap, free. [main-thread] */
void ld_core_release(ld_core *core);

/* Start over at position 0 with a new epoch (own clock), e.g. CLAP reset. [audio-thread] */
void ld_core_reset(ld_core *core);

/* Process one block. Realtime blocks never block, allocate, lock or make system calls;
 * offline blocks (and realtime-labelled ones while the I/O thread infers a render, see
 * core_internal.h) wait (bounded) for generated audio. Before prepare, outputs silence.
 * Returns a bit per output channel that is all zeros (VST3 silenceFlags, CLAP constant_mask). [audio-thread] */
uint64_t ld_core_process(ld_core *core, const ld_audio_block *block);

/* Latency the engine asked for (LD_KEY_LATENCY_SAMPLES of WELCOME). [any-thread] */
uint32_t ld_core_get_latency(const ld_core *core);

/* Parameters, as plain values (ld_param ids); set sanitizes and tells the engine. [any-thread] */
double ld_core_get_param(const ld_core *core, uint32_t id);
void ld_core_set_param(ld_core *core, uint32_t id, double plain);

/* Saved state = the parameters (params.h). [main-thread] */
size_t ld_core_save_state(const ld_core *core, uint8_t out[LD_PARAM_STATE_BYTES]);
bool ld_core_load_state(ld_core *core, const uint8_t *in, size_t size);

/* Counters for tests and tools. [any-thread] */
void ld_core_get_stats(const ld_core *core, ld_core_stats *out);

/* Exported from both plugin files for tools that load the plugin in-process (livediff bounce):
 * offline blocks of any instance in this process that played without all their generated
 * audio. Copies entries first.. (at most `capacity`; only the first 4096 ever are kept) into
 * starts/frames (song position in samples, block length) and returns how many there were in
 * all; call with capacity 0 to read the count. [any-thread] */
#define LD_EXPORT __attribute__((visibility("default")))
LD_EXPORT uint64_t livediff_offline_misses(uint64_t first, int64_t *starts, uint32_t *frames, uint32_t capacity);

#endif
