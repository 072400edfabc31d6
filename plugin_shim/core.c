/* core.c — instance state and the audio-thread side of the shim (see core.h). */
#include "core_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OFFLINE_TIMEOUT_DEFAULT_S 60.0
#define OFFLINE_POLL_NS 200000L         /* offline waits sleep in 0.2 ms steps */
#define RING_SECONDS 2.0                /* input the ring holds while the engine is slow */
#define LATE_ENGINE_S 5.0               /* offline: how long blocks wait in all for a dead engine to come (back) */
#define WET_LIMIT 4.0f                  /* generated samples reach the host within +-4.0 (+12 dBFS) */
#define READ_RETRIES 2                  /* torn slot reads retried per block */

double ld_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* [any-thread] */
static double load_param(const ld_core *core, uint32_t id)
{
    uint64_t bits = atomic_load_explicit(&((ld_core *)core)->params[id], memory_order_relaxed);
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* [any-thread] */
static void store_param(ld_core *core, uint32_t id, double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    atomic_store_explicit(&core->params[id], bits, memory_order_relaxed);
}

/* ---------------------------------------------------------------- [main-thread] lifecycle */

ld_core *ld_core_create(const char *format)
{
    ld_core *core = calloc(1, sizeof *core);
    if (!core)
        return NULL;
    snprintf(core->format, sizeof core->format, "%s", format);
    for (uint32_t i = 0; i < LD_PARAM_DEFINED; i++)
        store_param(core, ld_param_table[i].id, ld_param_table[i].def);
    ld_clock_reset(&core->clock);
    return core;
}

void ld_core_destroy(ld_core *core)
{
    if (!core)
        return;
    ld_core_release(core);
    free(core);
}

bool ld_endpoint_problem(const char *endpoint, char *out, size_t out_size)
{
    if (strncmp(endpoint, "ipc://", 6) != 0)
        return false;
    char directory[sizeof ((ld_core *)0)->endpoint];
    snprintf(directory, sizeof directory, "%s", endpoint + 6);
    char *slash = strrchr(directory, '/');
    if (!slash)
        return false;               /* a relative path: refused by the endpoint rule already */
    slash[slash == directory] = '\0';
    struct stat info;
    if (lstat(directory, &info) != 0)
        return false;               /* not there yet (nor is an engine): checked again before every HELLO */
    const char *why = !S_ISDIR(info.st_mode) ? "is not a directory"
                    : info.st_uid != geteuid() ? "belongs to another user"
                    : info.st_mode & 077 ? "is open to other users" : NULL;
    if (why)
        snprintf(out, out_size, "ipc directory %.200s %s (uid %u, mode %03o); not connecting: another user could pose "
                 "as the engine. Allowed: a directory of yours with mode 700, as `livediff serve` makes it",
                 directory, why, (unsigned)info.st_uid, (unsigned)(info.st_mode & 0777));
    return why != NULL;
}

/* The endpoint rule of docs/protocol.md; refuses anything that is not local. [main-thread] */
static void resolve_endpoint(ld_core *core)
{
    const char *env = getenv("LIVEDIFF_ENDPOINT");
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    core->endpoint_error[0] = '\0';
    if (env && *env) {
        snprintf(core->endpoint, sizeof core->endpoint, "%s", env);
        const char *port = env + strlen("tcp://127.0.0.1:");
        bool ipc = strncmp(env, "ipc:///", 7) == 0;
        bool tcp = strncmp(env, "tcp://127.0.0.1:", strlen("tcp://127.0.0.1:")) == 0 && *port
                && strspn(port, "0123456789") == strlen(port) && strlen(port) <= 5 && atoi(port) > 0 && atoi(port) < 65536;
        if (!ipc && !tcp)
            snprintf(core->endpoint_error, sizeof core->endpoint_error,
                     "LIVEDIFF_ENDPOINT '%.120s' refused: allowed are ipc:///<absolute path> or tcp://127.0.0.1:<port>", env);
    } else if (runtime && *runtime) {
        snprintf(core->endpoint, sizeof core->endpoint, "ipc://%s/livediff/engine.sock", runtime);
    } else {
        snprintf(core->endpoint, sizeof core->endpoint, "ipc:///tmp/livediff-%u/engine.sock", (unsigned)getuid());
    }
    if (!core->endpoint_error[0])
        ld_endpoint_problem(core->endpoint, core->endpoint_error, sizeof core->endpoint_error);
}

/* [main-thread] */
static double offline_timeout_from_env(void)
{
    const char *text = getenv("LIVEDIFF_OFFLINE_TIMEOUT_S");
    char *end;
    double value = text ? strtod(text, &end) : 0.0;
    return text && end != text && isfinite(value) && value > 0 ? value : OFFLINE_TIMEOUT_DEFAULT_S;
}

/* LIVEDIFF_RENDER_FALLBACK=off: never infer a render from the host's speed. [main-thread] */
static bool infer_render_from_env(void)
{
    const char *text = getenv("LIVEDIFF_RENDER_FALLBACK");
    return !(text && (strcmp(text, "off") == 0 || strcmp(text, "0") == 0));
}

bool ld_core_rate_supported(double sample_rate)
{
    static const uint32_t rates[] = {LD_RATE_22050, LD_RATE_32000, LD_RATE_44100, LD_RATE_48000,
                                     LD_RATE_88200, LD_RATE_96000, LD_RATE_176400, LD_RATE_192000};
    for (size_t i = 0; i < sizeof rates / sizeof *rates; i++)
        if (sample_rate == rates[i])
            return true;
    return false;
}

/* Each activation is a new engine session with a fresh id (also the ZeroMQ routing identity):
 * the ROUTER refuses a second connection with an identity still in use, and a BYE from the
 * previous activation can then never close the new session. [main-thread] */
static void new_session_id(ld_core *core)
{
    uint64_t previous = core->instance_id;
    do {
        if (getrandom(&core->instance_id, sizeof core->instance_id, 0) != sizeof core->instance_id)
            core->instance_id = previous * 6364136223846793005u + (uint64_t)(ld_now_s() * 1e9) + (uintptr_t)core;
    } while (core->instance_id == 0 || core->instance_id == previous);
}

bool ld_core_prepare(ld_core *core, double sample_rate, uint32_t max_block, uint32_t channels, uint32_t mode)
{
    ld_core_release(core);
    if (!ld_core_rate_supported(sample_rate) || max_block == 0 || channels == 0 || channels > LD_MAX_CHANNELS)
        return false;
    core->sample_rate = sample_rate;
    core->max_block = max_block;
    core->piece = max_block < LD_MAX_AUDIO_FRAMES ? max_block : LD_MAX_AUDIO_FRAMES;
    core->channels = channels;
    core->declared_mode = mode;
    core->offline_timeout_s = offline_timeout_from_env();
    core->infer_render = infer_render_from_env();
    new_session_id(core);
    resolve_endpoint(core);

    /* Ring: RING_SECONDS of input and sidechain plus room for a few whole pieces and the
     * record headers of 32-frame blocks. */
    uint32_t piece = core->piece;
    double frames = RING_SECONDS * sample_rate + 4.0 * piece;
    uint64_t bytes = (uint64_t)(frames * channels * 2 * sizeof(float) + frames / 32 * sizeof(ld_record));
    core->fade_frames = (uint32_t)(((uint64_t)sample_rate * LD_SEAM_MS + 500) / 1000);
    core->scratch = calloc((size_t)(channels + 1) * piece + core->fade_frames, sizeof(float));
    if (!core->scratch || !ld_ring_init(&core->ring, bytes)) {
        free(core->scratch);
        core->scratch = NULL;
        return false;
    }
    for (uint32_t c = 0; c < channels; c++)
        core->wet[c] = core->scratch + (size_t)c * piece;
    core->zeros = core->scratch + (size_t)channels * piece;
    core->fade = core->zeros + piece;
    for (uint32_t i = 0; i < core->fade_frames; i++)   /* the engine's sin fade-in, complemented */
        core->fade[i] = (float)cos((double)i / core->fade_frames * (M_PI / 2));

    ld_clock_reset(&core->clock);
    core->hold_timeline = NULL;
    core->phase_known = false;
    core->bypass_gain = load_param(core, LD_PARAM_BYPASS) >= LD_BYPASS_ON ? 1.0f : 0.0f;
    atomic_store(&core->frames_processed, 0);
    atomic_store(&core->wait_ns, 0);
    atomic_store(&core->render_inferred, false);
    atomic_store(&core->sessions, 0);
    atomic_store(&core->engine_launched, false);
    core->late_engine_left_s = LATE_ENGINE_S;
    atomic_store(&core->engine_state, LD_ENGINE_CONNECTING);
    atomic_store(&core->io_stop, false);
    atomic_store(&core->params_dirty, false);
    core->zmq_context = ld_zmq_context_acquire();
    if (pthread_create(&core->io_thread, NULL, ld_io_thread_main, core) != 0) {
        if (core->zmq_context)
            ld_zmq_context_release();
        ld_ring_free(&core->ring);
        free(core->scratch);
        core->scratch = NULL;
        return false;
    }
    core->prepared = true;
    return true;
}

void ld_core_release(ld_core *core)
{
    if (!core->prepared)
        return;
    atomic_store(&core->io_stop, true);
    pthread_join(core->io_thread, NULL);    /* the thread says BYE and unmaps on its way out */
    if (core->zmq_context)
        ld_zmq_context_release();
    ld_ring_free(&core->ring);
    free(core->scratch);
    core->scratch = NULL;
    core->prepared = false;
}

/* ---------------------------------------------------------------- [any-thread] accessors */

uint32_t ld_core_get_latency(const ld_core *core)
{
    return atomic_load(&((ld_core *)core)->latency);
}

double ld_core_get_param(const ld_core *core, uint32_t id)
{
    return id < LD_PARAM_COUNT ? load_param(core, id) : 0.0;
}

void ld_core_set_param(ld_core *core, uint32_t id, double plain)
{
    const ld_param_info *p = ld_param_find(id);
    if (!p)
        return;
    double value = ld_param_sanitize(p, plain);
    if (value != load_param(core, id)) {
        store_param(core, id, value);
        atomic_fetch_add_explicit(&core->params_version, 1, memory_order_release);
        atomic_store_explicit(&core->params_dirty, true, memory_order_release);
    }
}

size_t ld_core_save_state(const ld_core *core, uint8_t out[LD_PARAM_STATE_BYTES])
{
    double values[LD_PARAM_COUNT] = {0};
    for (uint32_t id = 0; id < LD_PARAM_COUNT; id++)
        values[id] = load_param(core, id);
    return ld_params_save(values, out);
}

bool ld_core_load_state(ld_core *core, const uint8_t *in, size_t size)
{
    double values[LD_PARAM_COUNT];
    for (uint32_t id = 0; id < LD_PARAM_COUNT; id++)
        values[id] = load_param(core, id);
    if (!ld_params_load(in, size, values))
        return false;
    for (uint32_t i = 0; i < LD_PARAM_DEFINED; i++)
        ld_core_set_param(core, ld_param_table[i].id, values[ld_param_table[i].id]);
    return true;
}

void ld_core_get_stats(const ld_core *core, ld_core_stats *out)
{
    ld_core *c = (ld_core *)core;
    *out = (ld_core_stats){
        .underruns = atomic_load(&c->underruns),
        .offline_timeouts = atomic_load(&c->offline_timeouts),
        .dropped_frames = atomic_load(&c->dropped_frames),
        .sessions = atomic_load(&c->sessions),
        .engine_state = atomic_load(&c->engine_state),
        .epoch = atomic_load(&c->last_epoch),
        .render_inferred = atomic_load(&c->render_inferred),
        .engine_launched = atomic_load(&c->engine_launched),
    };
}

/* ---------------------------------------------------------------- [audio-thread] processing */

void ld_core_reset(ld_core *core)
{
    ld_clock_reset(&core->clock);
    core->hold_timeline = NULL;
    core->phase_known = false;
}

/* Hazard pointer: announce which mapping we use before using it; the I/O thread unmaps a
 * retired mapping only once `reading` no longer names it (seq_cst on both sides). [audio-thread] */
static const ld_timeline *acquire_timeline(ld_core *core)
{
    ld_timeline *timeline;
    do {
        timeline = atomic_load(&core->published);
        atomic_store(&core->reading, timeline);
    } while (timeline != atomic_load(&core->published));
    return timeline;
}

/* [audio-thread] */
static void release_timeline(ld_core *core)
{
    atomic_store(&core->reading, NULL);
}

/* [audio-thread], offline blocks only */
static void sleep_briefly(void)
{
    struct timespec step = {0, OFFLINE_POLL_NS};
    nanosleep(&step, NULL);
}

/* [audio-thread], offline blocks only: account waiting time, so the I/O thread's view of the
 * host's speed leaves out the time the host spent waiting for us. */
static void add_wait(ld_core *core, double since)
{
    atomic_fetch_add_explicit(&core->wait_ns, (uint64_t)((ld_now_s() - since) * 1e9), memory_order_relaxed);
}

/* Hand the block to the I/O thread. Realtime: drop and count when the ring is full.
 * Offline: wait for room (bounded), since a bounce must not lose input. [audio-thread] */
static void push_record(ld_core *core, const ld_position *position, const ld_audio_block *block, uint32_t mode,
                        uint32_t offset, uint32_t frames, bool advancing)
{
    ld_record record = {.position = *position, .mode = mode, .frames = advancing ? frames : 0,
                        .channels = core->channels,
                        .params_version = atomic_load_explicit(&core->params_version, memory_order_acquire)};
    const void *parts[1 + 2 * LD_MAX_CHANNELS] = {&record};
    size_t sizes[1 + 2 * LD_MAX_CHANNELS] = {sizeof record};
    unsigned count = 1;
    size_t channel_bytes = (size_t)record.frames * sizeof(float);
    if (record.frames) {
        for (uint32_t c = 0; c < core->channels; c++, count++) {
            uint32_t from = c < block->input_channels ? c : block->input_channels - 1;
            parts[count] = block->input && block->input_channels && block->input[from] ? block->input[from] + offset : core->zeros;
            sizes[count] = channel_bytes;
        }
        record.has_sidechain = block->sidechain && block->sidechain_channels && block->sidechain[0];
        for (uint32_t c = 0; record.has_sidechain && c < core->channels; c++, count++) {
            uint32_t from = c < block->sidechain_channels ? c : block->sidechain_channels - 1;
            parts[count] = block->sidechain[from] ? block->sidechain[from] + offset : core->zeros;
            sizes[count] = channel_bytes;
        }
    }
    if (ld_ring_push(&core->ring, parts, sizes, count))
        return;
    if (mode == LD_MODE_OFFLINE) {
        double started = ld_now_s(), deadline = started + core->offline_timeout_s;
        while (atomic_load(&core->engine_state) != LD_ENGINE_DEAD && ld_now_s() < deadline) {
            sleep_briefly();
            if (ld_ring_push(&core->ring, parts, sizes, count)) {
                add_wait(core, started);
                return;
            }
        }
        add_wait(core, started);
    }
    atomic_fetch_add_explicit(&core->dropped_frames, record.frames, memory_order_relaxed);
}

/* Offline only: wait until audio made for the block's grid covers it, or give up (bounded by the
 * offline timeout). While the engine is dead or absent the I/O thread keeps saying HELLO and
 * the blocks keep waiting for it, LATE_ENGINE_S in all until it answers again, so a bounce
 * started before its engine, or across an engine restart, goes on. Blocks treated as offline
 * only because the host runs fast (`inferred`) do not wait for a dead engine. [audio-thread] */
static bool wait_for_coverage(ld_core *core, const ld_position *position, uint32_t frames, bool inferred)
{
    double started = ld_now_s(), now = started, deadline = started + core->offline_timeout_s;
    for (;;) {
        const ld_timeline *timeline = acquire_timeline(core);
        if (timeline && ld_timeline_covers(timeline, position->epoch, &position->grid, position->pos_samples, frames)) {
            add_wait(core, started);
            return true;
        }
        uint32_t state = atomic_load(&core->engine_state);
        double later = ld_now_s();
        if (state == LD_ENGINE_ALIVE)
            core->late_engine_left_s = LATE_ENGINE_S;
        else if (state == LD_ENGINE_DEAD)
            core->late_engine_left_s -= later - now;
        now = later;
        /* An inferred render waits for a live engine only: the host may be realtime after all. */
        if (core->late_engine_left_s <= 0 || now >= deadline || (inferred && state != LD_ENGINE_ALIVE)) {
            atomic_fetch_add(&core->offline_timeouts, 1);
            add_wait(core, started);
            return false;
        }
        sleep_briefly();
    }
}

/* Fill a gap the engine has not covered, per the underrun policy. [audio-thread] */
static void fill_gap(ld_core *core, const ld_timeline *timeline, const ld_audio_block *block, uint32_t offset,
                     int64_t pos, uint32_t at, uint32_t frames, int policy)
{
    if (policy == LD_UNDERRUN_HOLD && timeline && timeline == core->hold_timeline) {
        /* Loop the last slot played, phase-locked to the timeline. */
        const ld_slot_view *slot = &core->hold;
        uint32_t done = 0;
        while (done < frames) {
            int64_t phase = (pos + done - slot->start) % slot->frames;
            if (phase < 0)
                phase += slot->frames;
            uint32_t n = frames - done < slot->frames - (uint32_t)phase ? frames - done : slot->frames - (uint32_t)phase;
            if (!ld_timeline_copy(timeline, slot, slot->start + phase, n, core->wet, at + done, core->channels))
                break;
            done += n;
        }
        if (done == frames)
            return;
        core->hold_timeline = NULL;     /* the engine reused that slot: nothing left to hold */
    }
    for (uint32_t c = 0; c < core->channels; c++) {
        bool dry = policy == LD_UNDERRUN_DRY && block->input && block->input_channels;
        const float *in = dry ? block->input[c < block->input_channels ? c : block->input_channels - 1] : NULL;
        if (in)
            memcpy(core->wet[c] + at, in + offset + at, frames * sizeof(float));
        else
            memset(core->wet[c] + at, 0, frames * sizeof(float));
    }
}

/* Going from the preroll's dry input into generated audio at timeline position `pos` of `slot`:
 * when the slot's first LD_SEAM_MS are still ahead, the engine faded them in from silence with
 * sin, so the dry input gets the matching cos (an equal-power crossfade); a slot entered later
 * (re-placed windows) gets a whole crossfade of its own. [audio-thread] */
static void start_crossfade(ld_core *core, const ld_slot_view *slot, uint32_t epoch, int64_t pos)
{
    core->xfade_active = true;
    core->xfade_epoch = epoch;
    core->xfade_start = pos;
    core->xfade_entry = pos - slot->start < core->fade_frames ? (int32_t)(pos - slot->start) : -1;
}

/* The crossfade from the dry input, on wet frames [at, at + frames) of timeline [pos, ...). [audio-thread] */
static void crossfade_from_dry(ld_core *core, const ld_audio_block *block, uint32_t offset, uint32_t epoch,
                               int64_t pos, uint32_t at, uint32_t frames)
{
    if (!core->xfade_active || epoch != core->xfade_epoch || pos < core->xfade_start)
        return;
    uint32_t done = (uint32_t)(pos - core->xfade_start);          /* frames of the fade already played */
    uint32_t first = core->xfade_entry >= 0 ? (uint32_t)core->xfade_entry + done : done;  /* index into fade */
    uint32_t n = first < core->fade_frames ? core->fade_frames - first : 0;
    if (n > frames)
        n = frames;
    else
        core->xfade_active = false;
    const float *const *input = block->input_channels ? block->input : NULL;
    for (uint32_t c = 0; c < core->channels && input; c++) {
        const float *in = input[c < block->input_channels ? c : block->input_channels - 1];
        float *wet = core->wet[c] + at;
        for (uint32_t i = 0; in && i < n; i++) {
            uint32_t k = first + i;
            float dry = in[offset + at + i] * core->fade[k];
            wet[i] = core->xfade_entry >= 0 ? wet[i] + dry : dry + wet[i] * (k ? core->fade[core->fade_frames - k] : 0.0f);
        }
    }
}

/* Generated audio for [pos, pos + frames) into core->wet (offline: only audio made for the
 * block's grid); returns whether anything was missing. Until the first generated audio of an epoch plays (the preroll phase: LD_WINDOW_PREROLL slots
 * and gaps), the preroll parameter decides: the dry input or silence; then the underrun policy
 * fills gaps. [audio-thread] */
static bool read_generated(ld_core *core, const ld_timeline *timeline, const ld_audio_block *block, uint32_t offset,
                           const ld_position *position, uint32_t frames, int policy, bool dry_preroll)
{
    bool offline = block->mode == LD_MODE_OFFLINE || (position->flags & LD_TRANSPORT_RENDER_INFERRED);
    const uint32_t *grid = offline ? &position->grid : NULL;
    bool missing = false;
    int preroll = dry_preroll ? LD_UNDERRUN_DRY : LD_UNDERRUN_SILENCE;
    uint32_t at = 0, retries = 0;
    while (at < frames) {
        int64_t pos = position->pos_samples + at;
        ld_slot_view slot;
        int64_t next_start = INT64_MAX;
        if (timeline && ld_timeline_find(timeline, position->epoch, grid, pos, &slot, &next_start)) {
            int64_t available = slot.start + slot.frames - pos;
            uint32_t n = available < frames - at ? (uint32_t)available : frames - at;
            if (slot.flags & LD_WINDOW_PREROLL) {
                fill_gap(core, NULL, block, offset, pos, at, n, preroll);
                core->preroll_played = true;
                core->preroll_next = pos + n;
                at += n;
                continue;
            }
            if (ld_timeline_copy(timeline, &slot, pos, n, core->wet, at, core->channels)) {
                if (core->in_preroll) {
                    if (dry_preroll && core->preroll_played && pos == core->preroll_next)
                        start_crossfade(core, &slot, position->epoch, pos);
                    core->in_preroll = false;
                }
                crossfade_from_dry(core, block, offset, position->epoch, pos, at, n);
                core->hold = slot;
                core->hold_timeline = timeline;
                at += n;
                continue;
            }
            /* Torn read: the engine withdrew the slot while we copied. It publishes a window's new
             * placement before withdrawing the old one, so looking again finds it (bounded). */
            if (retries++ < READ_RETRIES)
                continue;
            next_start = pos + n;
        }
        uint32_t n = next_start < pos + (frames - at) ? (uint32_t)(next_start - pos) : frames - at;
        if (core->in_preroll) {
            fill_gap(core, NULL, block, offset, pos, at, n, preroll);
            core->preroll_played = true;
            core->preroll_next = pos + n;
        } else {
            fill_gap(core, timeline, block, offset, pos, at, n, policy);
        }
        missing = true;
        at += n;
    }
    return missing;
}

/* A generated sample as the host may get it: finite and within +-WET_LIMIT whatever the segment
 * holds (NaN plays as 0). Compares only: no libm call, vectorizable. [audio-thread] */
static inline float bounded(float x)
{
    x = x > WET_LIMIT ? WET_LIMIT : x;
    x = x < -WET_LIMIT ? -WET_LIMIT : x;
    return x == x ? x : 0.0f;
}

/* Offline blocks played without (all of) their generated audio, process-wide: tools that host
 * the plugin in their own process (livediff bounce) read them after rendering to name the bars
 * (while blocks are still being processed, the count may run ahead of the entries). */
#define MISS_LOG_ENTRIES 4096
static _Atomic uint64_t miss_count;
static struct { int64_t start; uint32_t frames; } miss_log[MISS_LOG_ENTRIES];

/* [audio-thread], offline blocks only */
static void record_offline_miss(int64_t start, uint32_t frames)
{
    uint64_t i = atomic_fetch_add(&miss_count, 1);
    if (i < MISS_LOG_ENTRIES) {
        miss_log[i].start = start;
        miss_log[i].frames = frames;
    }
}

LD_EXPORT uint64_t livediff_offline_misses(uint64_t first, int64_t *starts, uint32_t *frames, uint32_t capacity)
{
    uint64_t count = atomic_load(&miss_count);
    for (uint64_t i = first; i < count && i < MISS_LOG_ENTRIES && i - first < capacity; i++) {
        starts[i - first] = miss_log[i].start;
        frames[i - first] = miss_log[i].frames;
    }
    return count;
}

/* dry + mix * (wet - dry), then towards the dry input by the bypass gain, which ramps over the
 * seam length so switching bypass does not click. Returns a bit per output channel that got a
 * non-zero sample. [audio-thread] */
static uint64_t write_output(ld_core *core, const ld_audio_block *block, uint32_t offset, uint32_t frames,
                             float mix, bool bypass)
{
    float target = bypass ? 1.0f : 0.0f, step = 1.0f / (float)core->fade_frames;
    float start = core->bypass_gain;
    uint64_t loud = 0;
    for (uint32_t c = 0; c < block->output_channels; c++) {
        float *out = block->output[c];
        if (!out)
            continue;
        const float *wet = core->wet[c < core->channels ? c : core->channels - 1];
        const float *in = block->input && block->input_channels
                        ? block->input[c < block->input_channels ? c : block->input_channels - 1] : NULL;
        float gain = start;
        bool nonzero = false;
        for (uint32_t i = 0; i < frames; i++) {
            float dry = in ? in[offset + i] : 0.0f;
            float mixed = dry + mix * (bounded(wet[i]) - dry);
            if (gain != target)
                gain = target > gain ? fminf(gain + step, target) : fmaxf(gain - step, target);
            float value = gain == 0.0f ? mixed : gain == 1.0f ? dry : mixed + gain * (dry - mixed);
            out[offset + i] = value;
            nonzero |= value != 0.0f;
        }
        if (nonzero && c < 64)
            loud |= 1ull << c;
    }
    float moved = (float)frames * step;
    core->bypass_gain = target > start ? fminf(start + moved, target) : fmaxf(start - moved, target);
    return loud;
}

/* [audio-thread]; waits (bounded) only when the piece is offline. Returns write_output's bits. */
static uint64_t process_piece(ld_core *core, const ld_audio_block *block, uint32_t offset, uint32_t frames)
{
    int policy = (int)load_param(core, LD_PARAM_UNDERRUN_POLICY);
    float mix = (float)(load_param(core, LD_PARAM_MIX) / 100.0);
    bool bypass = load_param(core, LD_PARAM_BYPASS) == LD_BYPASS_ON;
    bool dry_preroll = load_param(core, LD_PARAM_PREROLL) == LD_PREROLL_DRY;
    ld_position position;
    uint32_t problems = ld_clock_advance(&core->clock, block->transport, load_param(core, LD_PARAM_TEMPO_BPM),
                                         (int)load_param(core, LD_PARAM_SYNC_MODE), frames, core->sample_rate, &position);
    if (problems)
        atomic_fetch_or_explicit(&core->host_problems, problems, memory_order_relaxed);
    atomic_store_explicit(&core->last_epoch, position.epoch, memory_order_relaxed);
    bool advancing = position.flags & LD_TRANSPORT_PLAYING;
    if (!core->phase_known || position.epoch != core->preroll_epoch) {
        core->phase_known = true;       /* a new epoch: the lookahead fills again */
        core->preroll_epoch = position.epoch;
        core->in_preroll = true;
        core->preroll_played = false;
        core->xfade_active = false;
    }
    bool inferred = block->mode != LD_MODE_OFFLINE && atomic_load_explicit(&core->render_inferred, memory_order_relaxed);
    uint32_t mode = inferred ? LD_MODE_OFFLINE : block->mode;
    if (inferred)
        position.flags |= LD_TRANSPORT_RENDER_INFERRED;
    push_record(core, &position, block, mode, offset, frames, advancing);

    /* Fully bypassed, the piece plays the dry input: nothing to wait for, nothing missed. */
    bool heard = !(bypass && core->bypass_gain == 1.0f);
    bool wait = advancing && mode == LD_MODE_OFFLINE && heard;
    bool covered = wait ? wait_for_coverage(core, &position, frames, inferred) : true;
    const ld_timeline *timeline = acquire_timeline(core);
    if (!advancing) {
        /* A stopped host: nothing plays, the position stands still. */
        fill_gap(core, NULL, block, offset, position.pos_samples, 0, frames,
                 policy == LD_UNDERRUN_DRY ? LD_UNDERRUN_DRY : LD_UNDERRUN_SILENCE);
    } else if (!covered) {
        fill_gap(core, NULL, block, offset, position.pos_samples, 0, frames, LD_UNDERRUN_SILENCE);
        record_offline_miss(position.pos_samples, frames);
    } else if (read_generated(core, timeline, block, offset, &position, frames, policy, dry_preroll) && heard) {
        atomic_fetch_add_explicit(&core->underruns, 1, memory_order_relaxed);
        if (mode == LD_MODE_OFFLINE)
            record_offline_miss(position.pos_samples, frames);
    }
    release_timeline(core);
    uint64_t loud = write_output(core, block, offset, frames, mix, bypass);
    atomic_fetch_add_explicit(&core->frames_processed, frames, memory_order_relaxed);
    return loud;
}

/* [audio-thread] */
static void apply_events(ld_core *core, const ld_audio_block *block, uint32_t *next, uint32_t upto)
{
    for (; *next < block->event_count && block->events[*next].offset <= upto; (*next)++)
        ld_core_set_param(core, block->events[*next].id, block->events[*next].plain);
}

uint64_t ld_core_process(ld_core *core, const ld_audio_block *block)
{
    uint32_t channels = block->output_channels < 64 ? block->output_channels : 64;
    uint64_t all = channels == 64 ? ~0ull : (1ull << channels) - 1;
    uint32_t next = 0;
    if (!core->prepared) {
        apply_events(core, block, &next, UINT32_MAX);
        for (uint32_t c = 0; c < block->output_channels && block->frames; c++)
            if (block->output[c])
                memset(block->output[c], 0, block->frames * sizeof(float));
        return all;
    }
    uint64_t loud = 0;
    ld_audio_block piece = *block;
    ld_host_transport later;
    for (uint32_t offset = 0; offset < block->frames;) {
        apply_events(core, block, &next, offset);
        uint32_t frames = block->frames - offset < core->piece ? block->frames - offset : core->piece;
        if (next < block->event_count && block->events[next].offset < offset + frames)
            frames = block->events[next].offset - offset;     /* the next value starts a new piece */
        if (offset && block->transport) {
            /* Later pieces start where the earlier ended. */
            later = *block->transport;
            later.pos_samples += offset;
            later.pos_beats += offset * (later.tempo / 60.0 / core->sample_rate);
            piece.transport = &later;
        }
        loud |= process_piece(core, &piece, offset, frames);
        offset += frames;
    }
    apply_events(core, block, &next, UINT32_MAX);
    return ~loud & all;
}
