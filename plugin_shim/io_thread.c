/*
 * io_thread.c — the I/O thread: the only code that touches ZeroMQ, msgpack and the
 * shared-memory mapping. It polls (the audio thread never wakes it), drains the ring from
 * the audio thread into TRANSPORT and AUDIO messages, and tracks whether the engine lives.
 */
#include "core_internal.h"

#include <errno.h>
#include <math.h>
#include <msgpack.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

extern char **environ;

#ifndef LD_ENGINE_COMMAND
#define LD_ENGINE_COMMAND ""            /* the Makefile bakes in the livediff that built the plugin */
#endif

#define POLL_MS 1
#define HELLO_INTERVAL_S 1.0
#define HELLO_RETRY_S 0.01
#define TRANSPORT_INTERVAL_S 0.05
#define ENGINE_SILENT_S 2.0             /* no message for this long: the engine is dead */
#define FIRST_ANSWER_S 2.5              /* no WELCOME this long after start: nobody is there */
#define AUDIO_FLUSH_S 0.02              /* realtime: send coalesced input at least this often */
#define BYE_LINGER_MS 50
#define LOG_INTERVAL_S 5.0
#define ABSENT_ANSWER_S 0.25            /* ...when an engine was already found absent in this process */
#define REPLIES_PER_WAKE 256            /* bounded like the engine's drain: a flood cannot hold this thread */
#define KEEPALIVE_S 0.25                /* send something this often whatever the audio thread does */
#define PARAMS_IDLE_S 0.1               /* no block for this long: a parameter change goes out on its own */
#define LAUNCH_AFTER_S 0.5              /* no answer this long: start an engine (a running one answers in ms) */
#define ENGINE_START_S 30.0             /* a started engine gets this long to answer before anyone retries */
#define ENGINE_IDLE_EXIT_S 600          /* an auto-launched engine exits after this long without sessions */
/* Render inference: realtime-labelled blocks are treated as offline once at least
 * INFER_ENTER_AUDIO_S of audio went through within INFER_WINDOW_S of wall time, INFER_RATIO times
 * faster than real time (the time the audio thread spent waiting for us left out); a realtime host
 * cannot do that for long, a freewheeling export does it at once. Back to realtime after
 * INFER_LEAVE_S of wall time at under INFER_LEAVE_RATIO (a stopped host counts). */
#define INFER_SAMPLE_S 0.002            /* fine: a fast export passes 1 s of audio in a few ms */
#define INFER_HISTORY 1024              /* > INFER_LEAVE_S / INFER_SAMPLE_S */
#define INFER_ENTER_AUDIO_S 1.0
#define INFER_WINDOW_S 0.5
#define INFER_RATIO 2.0
#define INFER_LEAVE_S 2.0               /* long: leaving too early costs an export its windows */
#define INFER_LEAVE_RATIO 1.5

/* Whether the last I/O thread (of any instance) found no engine: then the next one gives a
 * missing engine only ABSENT_ANSWER_S, so hosts that re-activate often (pedalboard) do not
 * wait FIRST_ANSWER_S each time. A loopback engine answers HELLO within milliseconds. */
static _Atomic bool engine_absent;

/* Whether "engine connected" was logged since an engine last went silent, so a host that opens
 * throwaway instances (pedalboard opens four while loading) logs it once, not per instance. */
static _Atomic bool connect_logged;

/* ---------------------------------------------------------------- [main-thread] zmq context */

static pthread_mutex_t context_lock = PTHREAD_MUTEX_INITIALIZER;
static void *context;
static unsigned context_users;

void *ld_zmq_context_acquire(void)
{
    pthread_mutex_lock(&context_lock);
    if (!context)
        context = zmq_ctx_new();
    if (context)
        context_users++;
    void *result = context;
    pthread_mutex_unlock(&context_lock);
    return result;
}

void ld_zmq_context_release(void)
{
    pthread_mutex_lock(&context_lock);
    if (context_users && --context_users == 0) {
        zmq_ctx_term(context);          /* bounded: every socket was closed with a short linger */
        context = NULL;
    }
    pthread_mutex_unlock(&context_lock);
}

/* One engine start per endpoint at a time in this process (instances created together start
 * one engine); across processes the engine's own lock file leaves exactly one. */
static pthread_mutex_t launch_lock = PTHREAD_MUTEX_INITIALIZER;
static char launch_endpoint[512];
static double launch_at = -1e9;

/* ---------------------------------------------------------------- [io-thread] state */

typedef struct progress_sample {
    double wall;
    uint64_t frames;
    double wait;
} progress_sample;

typedef struct io_state {
    ld_core *core;
    void *socket;
    msgpack_sbuffer buffer;
    msgpack_packer packer;
    uint8_t *payload;               /* one record's audio, read from the ring */
    float *run_input, *run_sidechain;  /* coalesced AUDIO run: planar, LD_MAX_AUDIO_FRAMES per channel */
    ld_position run_position;
    uint32_t run_frames;
    bool run_has_sidechain;
    double run_started;
    ld_position sent;               /* last TRANSPORT sent */
    bool sent_any;
    double sent_at;
    ld_position latest;             /* position of the last record drained */
    uint32_t params_heard;          /* params_version the engine has been sent (drain_ring: at its block) */
    uint32_t latest_mode;
    bool have_latest;
    double latest_at;
    bool welcomed;
    bool hello_sent;                /* a HELLO went out on this socket: BYE on the way out */
    double started, last_heard, next_hello, last_send;
    progress_sample progress[INFER_HISTORY];   /* render inference, one sample per INFER_SAMPLE_S */
    uint32_t progress_count;
    bool launch_configured, auto_launch, launched;
    char engine_command[512], engine_log[512];
} io_state;

/* [io-thread] */
static void log_line(io_state *io, const char *text)
{
    fprintf(stderr, "livediff[%016llx]: %s\n", (unsigned long long)io->core->instance_id, text);
}

/* Log a problem once, not every time it recurs (e.g. a refused HELLO once per second). [io-thread] */
static void log_once(io_state *io, const char *text)
{
    if (strcmp(text, io->core->logged_text) != 0) {
        snprintf(io->core->logged_text, sizeof io->core->logged_text, "%s", text);
        log_line(io, text);
    }
}

/* [io-thread] */
static double param(const ld_core *core, uint32_t id) { return ld_core_get_param(core, id); }

/* ---------------------------------------------------------------- [io-thread] sending */

/* [io-thread] */
static void begin(io_state *io, uint32_t entries, uint32_t type)
{
    msgpack_sbuffer_clear(&io->buffer);
    msgpack_pack_map(&io->packer, entries);
    msgpack_pack_int(&io->packer, LD_KEY_TYPE);
    msgpack_pack_uint32(&io->packer, type);
    msgpack_pack_int(&io->packer, LD_KEY_INSTANCE);
    msgpack_pack_uint64(&io->packer, io->core->instance_id);
}

/* [io-thread] */
static void put_uint(io_state *io, int key, uint64_t value)
{
    msgpack_pack_int(&io->packer, key);
    msgpack_pack_uint64(&io->packer, value);
}

/* [io-thread] */
static void put_int(io_state *io, int key, int64_t value)
{
    msgpack_pack_int(&io->packer, key);
    msgpack_pack_int64(&io->packer, value);
}

/* [io-thread] */
static void put_double(io_state *io, int key, double value)
{
    msgpack_pack_int(&io->packer, key);
    msgpack_pack_double(&io->packer, value);
}

/* [io-thread] */
static void put_params(io_state *io)
{
    msgpack_pack_int(&io->packer, LD_KEY_PARAMS);
    msgpack_pack_map(&io->packer, LD_PARAM_DEFINED);
    for (uint32_t i = 0; i < LD_PARAM_DEFINED; i++) {
        msgpack_pack_uint32(&io->packer, ld_param_table[i].id);
        msgpack_pack_double(&io->packer, param(io->core, ld_param_table[i].id));
    }
}

/* Never blocks: a full queue (engine not reading) loses the message. [io-thread] */
static bool finish(io_state *io)
{
    bool sent = io->socket && zmq_send(io->socket, io->buffer.data, io->buffer.size, ZMQ_DONTWAIT) >= 0;
    if (sent)
        io->last_send = ld_now_s();
    return sent;
}

/* [io-thread] */
static bool send_hello(io_state *io)
{
    ld_core *core = io->core;
    begin(io, 9, LD_MSG_HELLO);
    put_uint(io, LD_KEY_VERSION, LD_PROTOCOL_VERSION);
    msgpack_pack_int(&io->packer, LD_KEY_FORMAT);
    msgpack_pack_str_with_body(&io->packer, core->format, strlen(core->format));
    put_uint(io, LD_KEY_SAMPLE_RATE, (uint64_t)llround(core->sample_rate));
    put_uint(io, LD_KEY_MAX_BLOCK, core->piece);     /* the largest piece the engine will see */
    put_uint(io, LD_KEY_CHANNELS, core->channels);
    put_uint(io, LD_KEY_PROCESS_MODE, io->have_latest ? io->latest_mode : core->declared_mode);
    atomic_store(&core->params_dirty, false);   /* HELLO carries them all */
    io->params_heard = atomic_load(&core->params_version);
    put_params(io);
    bool sent = finish(io);
    io->hello_sent |= sent;
    return sent;
}

/* [io-thread] */
static void send_transport(io_state *io, const ld_position *p, uint32_t mode, double now)
{
    ld_core *core = io->core;
    begin(io, 17, LD_MSG_TRANSPORT);
    put_uint(io, LD_KEY_EPOCH, p->epoch);
    put_uint(io, LD_KEY_GRID, p->grid);
    put_uint(io, LD_KEY_FLAGS, p->flags);
    put_double(io, LD_KEY_TEMPO, p->tempo);
    put_int(io, LD_KEY_POS_SAMPLES, p->pos_samples);
    put_double(io, LD_KEY_POS_BEATS, p->pos_beats);
    put_double(io, LD_KEY_BAR_START_BEATS, p->bar_start_beats);
    put_uint(io, LD_KEY_TSIG_NUM, p->tsig_num);
    put_uint(io, LD_KEY_TSIG_DEN, p->tsig_den);
    put_double(io, LD_KEY_LOOP_START_BEATS, p->loop_start_beats);
    put_double(io, LD_KEY_LOOP_END_BEATS, p->loop_end_beats);
    put_uint(io, LD_KEY_PROCESS_MODE, mode);
    put_uint(io, LD_KEY_UNDERRUNS, atomic_load(&core->underruns));
    put_uint(io, LD_KEY_OFFLINE_TIMEOUTS, atomic_load(&core->offline_timeouts));
    put_uint(io, LD_KEY_DROPPED_FRAMES, atomic_load(&core->dropped_frames));
    finish(io);
    io->sent = *p;
    io->sent_any = true;
    io->sent_at = now;
}

/* The current values; params_heard becomes the version they include (at least). [io-thread] */
static void send_params(io_state *io)
{
    atomic_store(&io->core->params_dirty, false);
    io->params_heard = atomic_load(&io->core->params_version);
    begin(io, 3, LD_MSG_PARAMS);
    put_params(io);
    finish(io);
}

/* [io-thread] */
static void send_bye(io_state *io)
{
    begin(io, 2, LD_MSG_BYE);
    finish(io);
}

/* [io-thread] */
static void put_planar(io_state *io, int key, const float *run, bool present)
{
    msgpack_pack_int(&io->packer, key);
    if (!present) {
        msgpack_pack_nil(&io->packer);
        return;
    }
    uint32_t channels = io->core->channels;
    msgpack_pack_bin(&io->packer, channels * io->run_frames * sizeof(float));
    for (uint32_t c = 0; c < channels; c++)
        msgpack_pack_bin_body(&io->packer, run + (size_t)c * LD_MAX_AUDIO_FRAMES, io->run_frames * sizeof(float));
}

/* [io-thread] */
static void flush_audio(io_state *io)
{
    if (!io->run_frames)
        return;
    const ld_position *p = &io->run_position;
    begin(io, 10, LD_MSG_AUDIO);
    put_uint(io, LD_KEY_EPOCH, p->epoch);
    put_int(io, LD_KEY_POS_SAMPLES, p->pos_samples);
    put_double(io, LD_KEY_POS_BEATS, p->pos_beats);
    put_double(io, LD_KEY_TEMPO, p->tempo);
    put_uint(io, LD_KEY_FRAMES, io->run_frames);
    put_uint(io, LD_KEY_CHANNELS, io->core->channels);
    put_planar(io, LD_KEY_INPUT, io->run_input, true);
    put_planar(io, LD_KEY_SIDECHAIN, io->run_sidechain, io->run_has_sidechain);
    if (!finish(io))
        atomic_fetch_add(&io->core->dropped_frames, io->run_frames);
    io->run_frames = 0;
}

/* Append one record's audio to the run; a run is contiguous with one epoch and tempo. [io-thread] */
static void append_audio(io_state *io, const ld_record *record, double now)
{
    const ld_position *p = &record->position;
    const ld_position *run = &io->run_position;
    bool continues = io->run_frames && run->epoch == p->epoch && run->tempo == p->tempo
                  && run->pos_samples + io->run_frames == p->pos_samples
                  && io->run_has_sidechain == (bool)record->has_sidechain
                  && io->run_frames + record->frames <= LD_MAX_AUDIO_FRAMES;
    if (!continues) {
        flush_audio(io);
        io->run_position = *p;
        io->run_has_sidechain = record->has_sidechain;
        io->run_started = now;
    }
    size_t channel_bytes = (size_t)record->frames * sizeof(float);
    for (uint32_t c = 0; c < record->channels; c++) {
        memcpy(io->run_input + (size_t)c * LD_MAX_AUDIO_FRAMES + io->run_frames,
               io->payload + c * channel_bytes, channel_bytes);
        if (record->has_sidechain)
            memcpy(io->run_sidechain + (size_t)c * LD_MAX_AUDIO_FRAMES + io->run_frames,
                   io->payload + (record->channels + c) * channel_bytes, channel_bytes);
    }
    io->run_frames += record->frames;
}

/* [io-thread] */
static bool transport_changed(const ld_position *a, const ld_position *b)
{
    return a->grid != b->grid || a->flags != b->flags;
}

/* Move everything the audio thread pushed into messages. Before the engine welcomed us the
 * records wait in the ring (an offline bounce must not lose its first blocks, nor the blocks
 * an offline wait holds for a late or restarted engine); realtime records are dropped once
 * the engine is known dead. [io-thread] */
static void drain_ring(io_state *io, double now)
{
    ld_core *core = io->core;
    uint32_t state = atomic_load(&core->engine_state);
    if (!io->welcomed && state != LD_ENGINE_DEAD)
        return;
    bool offline_seen = false;
    while (ld_ring_readable(&core->ring) >= sizeof(ld_record)) {
        ld_record record;
        ld_ring_peek(&core->ring, &record, sizeof record);
        if (!io->welcomed && record.mode == LD_MODE_OFFLINE)
            break;
        ld_ring_read(&core->ring, &record, sizeof record);
        size_t payload = (size_t)record.frames * record.channels * sizeof(float) * (record.has_sidechain ? 2 : 1);
        ld_ring_read(&core->ring, io->payload, payload);
        io->latest = record.position;
        io->latest_mode = record.mode;
        io->have_latest = true;
        io->latest_at = now;
        offline_seen |= record.mode == LD_MODE_OFFLINE;
        if (!io->welcomed)
            continue;
        if (record.params_version != io->params_heard) {
            /* A parameter changed before this block: the engine hears it at this block's position,
             * in order with the audio (a new context_source takes effect at the next window
             * after it), not whenever this thread wakes. */
            flush_audio(io);
            send_transport(io, &record.position, record.mode, now);
            send_params(io);
            io->params_heard = record.params_version;   /* a later change is sent at its own block */
        }
        if (!io->sent_any || transport_changed(&io->sent, &record.position)) {
            flush_audio(io);
            send_transport(io, &record.position, record.mode, now);
        }
        if (record.frames)
            append_audio(io, &record, now);
    }
    /* Offline blocks wait for windows made from this input: send it now. Realtime: batch
     * small blocks, but never hold input longer than AUDIO_FLUSH_S. */
    if (io->run_frames && (offline_seen || now - io->run_started >= AUDIO_FLUSH_S
                           || io->run_frames >= core->sample_rate * AUDIO_FLUSH_S))
        flush_audio(io);
}

/* ---------------------------------------------------------------- [io-thread] mapping */

/* [io-thread] */
static void retire_timeline(io_state *io)
{
    ld_core *core = io->core;
    ld_timeline *old = atomic_exchange(&core->published, NULL);
    if (!old)
        return;
    while (atomic_load(&core->reading) == old) {   /* at most one audio block */
        struct timespec step = {0, 100000};
        nanosleep(&step, NULL);
    }
    ld_timeline_unmap(old);
}

/* Map the segment a WELCOME names, even when the name is unchanged: a repeated HELLO makes
 * the engine replace the segment under the same name. [io-thread] */
static void map_timeline(io_state *io, const char *name)
{
    ld_core *core = io->core;
    char error[224];
    ld_timeline *timeline = ld_timeline_map(name, (uint32_t)llround(core->sample_rate), error, sizeof error);
    if (!timeline) {
        char text[sizeof error + 40];
        snprintf(text, sizeof text, "not mapping the engine's segment: %s", error);
        log_once(io, text);
    }
    retire_timeline(io);
    atomic_store(&core->published, timeline);
}

/* ---------------------------------------------------------------- [io-thread] receiving */

/* [io-thread] */
static const msgpack_object *lookup(const msgpack_object *map, int key)
{
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_POSITIVE_INTEGER && kv->key.via.u64 == (uint64_t)key)
            return &kv->val;
    }
    return NULL;
}

/* [io-thread] */
static bool get_uint(const msgpack_object *map, int key, uint64_t *out)
{
    const msgpack_object *value = lookup(map, key);
    if (!value || value->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *out = value->via.u64;
    return true;
}

/* [io-thread] */
static bool get_str(const msgpack_object *map, int key, char *out, size_t out_size)
{
    const msgpack_object *value = lookup(map, key);
    if (!value || value->type != MSGPACK_OBJECT_STR || out_size == 0)
        return false;
    size_t size = value->via.str.size < out_size - 1 ? value->via.str.size : out_size - 1;
    if (size)                       /* an empty str has a NULL ptr (found by fuzz_reply) */
        memcpy(out, value->via.str.ptr, size);
    out[size] = '\0';
    return size == value->via.str.size;
}

/* [io-thread] */
static void set_state(io_state *io, uint32_t state)
{
    atomic_store(&io->core->engine_state, state);
}

/* [io-thread] */
static void on_welcome(io_state *io, const msgpack_object *map, double now)
{
    uint64_t version = 0, layout = 0, latency = 0;
    char name[64], text[256];
    get_uint(map, LD_KEY_LATENCY_SAMPLES, &latency);
    if (!get_uint(map, LD_KEY_VERSION, &version) || version != LD_PROTOCOL_VERSION
        || !get_uint(map, LD_KEY_LAYOUT_VERSION, &layout) || layout != LD_SHM_LAYOUT_VERSION
        || !get_str(map, LD_KEY_SHM_NAME, name, sizeof name)) {   /* a truncated name is no name */
        snprintf(text, sizeof text, "engine WELCOME refused: protocol %llu, layout %llu or segment name missing; "
                 "this shim needs protocol %d and layout %d", (unsigned long long)version,
                 (unsigned long long)layout, LD_PROTOCOL_VERSION, LD_SHM_LAYOUT_VERSION);
        log_once(io, text);
        set_state(io, LD_ENGINE_DEAD);
        return;
    }
    map_timeline(io, name);
    if (!atomic_load(&io->core->published)) {
        set_state(io, LD_ENGINE_DEAD);
        return;
    }
    atomic_store(&io->core->latency, (uint32_t)latency);
    atomic_fetch_add(&io->core->sessions, 1);
    if (!io->welcomed && !atomic_exchange(&connect_logged, true))
        log_line(io, "engine connected");
    io->welcomed = true;
    atomic_store(&engine_absent, false);
    io->sent_any = false;           /* the (new) session hears the transport first */
    io->core->logged_text[0] = '\0';
    io->last_heard = now;
    set_state(io, LD_ENGINE_ALIVE);
}

/* [io-thread] */
static void on_error(io_state *io, const msgpack_object *map)
{
    uint64_t code = 0;
    char message[192] = "", text[256];
    get_uint(map, LD_KEY_CODE, &code);
    get_str(map, LD_KEY_MESSAGE, message, sizeof message);
    snprintf(text, sizeof text, "engine error %llu: %s", (unsigned long long)code, message);
    log_once(io, text);
    if (code == LD_ERR_UNKNOWN_SESSION) {   /* e.g. a restarted engine: open a new session */
        io->welcomed = false;
        io->next_hello = 0;
    }
}

/* Big-endian unsigned of `bytes` bytes at p. [io-thread] */
static uint64_t be(const uint8_t *p, unsigned bytes)
{
    uint64_t value = 0;
    for (unsigned i = 0; i < bytes; i++)
        value = value << 8 | p[i];
    return value;
}

/* Whether `size` bytes can be one msgpack object whose containers claim no more elements than
 * there are bytes left (each takes at least one). msgpack-c allocates what a container claims
 * before reading it: one 5-byte map32 header made it ask for 256 GiB (found by fuzz_reply).
 * Walks without allocating or recursing. [io-thread] */
static bool plausible_msgpack(const uint8_t *p, size_t size)
{
    uint64_t pending = 1;                       /* objects still to read */
    size_t at = 0;
    while (pending) {
        if (at >= size || pending > size - at)
            return false;
        uint8_t t = p[at++];
        uint64_t skip = 0, children = 0;        /* payload bytes, contained objects */
        if (t <= 0x7f || t >= 0xe0 || (t >= 0xc0 && t <= 0xc3)) {
            /* fixint, nil, bool (0xc1 is unused; msgpack-c refuses it) */
        } else if (t <= 0x8f) {
            children = 2u * (t & 0x0f);
        } else if (t <= 0x9f) {
            children = t & 0x0f;
        } else if (t <= 0xbf) {
            skip = t & 0x1f;
        } else {
            static const uint8_t width[] = {   /* 0xc4..0xdf: bytes of the length/count field, or the payload */
                1, 2, 4, 1, 2, 4, 4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 2, 3, 5, 9, 17, 1, 2, 4, 2, 4, 2, 4};
            unsigned w = width[t - 0xc4];
            bool counted = t <= 0xc9 || (t >= 0xd9 && t <= 0xdf);   /* bin, ext, str, array, map */
            if (!counted) {
                skip = w;
            } else {
                if (w > size - at)
                    return false;
                uint64_t n = be(p + at, w);
                at += w;
                if (t >= 0xdc)
                    children = t >= 0xde ? 2 * n : n;
                else
                    skip = n + (t >= 0xc7 && t <= 0xc9);   /* ext: one type byte */
            }
        }
        if (skip > size - at)
            return false;
        at += skip;
        pending += children - 1;
    }
    return at == size;
}

/* One engine message, whatever its bytes (tests/fuzz/fuzz_reply.c feeds it garbage). [io-thread] */
static void handle_reply(io_state *io, const void *data, size_t size, double now)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    uint64_t type = 0;
    if (plausible_msgpack(data, size) && msgpack_unpack_next(&unpacked, data, size, NULL) == MSGPACK_UNPACK_SUCCESS
        && unpacked.data.type == MSGPACK_OBJECT_MAP && get_uint(&unpacked.data, LD_KEY_TYPE, &type)) {
        io->last_heard = now;
        if (type == LD_MSG_WELCOME)
            on_welcome(io, &unpacked.data, now);
        else if (type == LD_MSG_ERROR)
            on_error(io, &unpacked.data);
    } else {
        log_once(io, "ignoring an engine message that is not a msgpack map with LD_KEY_TYPE");
    }
    msgpack_unpacked_destroy(&unpacked);
}

/* [io-thread] */
static void receive_all(io_state *io, double now)
{
    for (int n = 0; n < REPLIES_PER_WAKE; n++) {
        zmq_msg_t message;
        zmq_msg_init(&message);
        if (zmq_msg_recv(&message, io->socket, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&message);
            return;
        }
        handle_reply(io, zmq_msg_data(&message), zmq_msg_size(&message), now);
        zmq_msg_close(&message);
    }
}

/* ---------------------------------------------------------------- [io-thread] auto-launch */

/* "yes"/"no" and friends; -1 when the text is neither. [io-thread] */
static int parse_bool(const char *text)
{
    static const char *const yes[] = {"1", "yes", "true", "on"}, *const no[] = {"0", "no", "false", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0)
            return 1;
        if (strcasecmp(text, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* Settings of auto-launch, read once per activation, the first time no engine answers: the
 * environment (LIVEDIFF_AUTO_LAUNCH, LIVEDIFF_ENGINE_COMMAND) overrides the config file
 * ($XDG_CONFIG_HOME or ~/.config, livediff/plugin.conf: `auto_launch = no`, `engine_command = ...`),
 * which overrides the livediff the plugin was built with. [io-thread] */
static void configure_launch(io_state *io)
{
    io->launch_configured = true;
    io->auto_launch = true;
    snprintf(io->engine_command, sizeof io->engine_command, "%s", *LD_ENGINE_COMMAND ? LD_ENGINE_COMMAND : "livediff");
    const char *config_home = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    char path[512] = "";
    if (config_home && *config_home)
        snprintf(path, sizeof path, "%s/livediff/plugin.conf", config_home);
    else if (home && *home)
        snprintf(path, sizeof path, "%s/.config/livediff/plugin.conf", home);
    FILE *file = *path ? fopen(path, "r") : NULL;
    char line[600];
    for (int number = 1; file && fgets(line, sizeof line, file); number++) {
        char *key = line + strspn(line, " \t"), *end = key + strcspn(key, "\r\n");
        *end = '\0';
        if (*key == '#' || *key == '\0')
            continue;
        char *equals = strchr(key, '=');
        char *value = equals ? equals + 1 + strspn(equals + 1, " \t") : NULL;
        for (char *k = equals ? equals : end; k > key && (k[-1] == ' ' || k[-1] == '\t'); k--)
            k[-1] = '\0';
        if (equals)
            *equals = '\0';
        char text[700];
        if (value && strcmp(key, "auto_launch") == 0 && parse_bool(value) >= 0) {
            io->auto_launch = parse_bool(value);
        } else if (value && strcmp(key, "engine_command") == 0 && *value) {
            snprintf(io->engine_command, sizeof io->engine_command, "%s", value);
        } else {
            snprintf(text, sizeof text, "%.300s line %d ignored: allowed are `auto_launch = yes|no` and "
                     "`engine_command = <command>`", path, number);
            log_once(io, text);
        }
    }
    if (file)
        fclose(file);
    const char *env_launch = getenv("LIVEDIFF_AUTO_LAUNCH"), *env_command = getenv("LIVEDIFF_ENGINE_COMMAND");
    if (env_launch && parse_bool(env_launch) >= 0)
        io->auto_launch = parse_bool(env_launch);
    if (env_command && *env_command)
        snprintf(io->engine_command, sizeof io->engine_command, "%s", env_command);
    /* The engine's log goes beside its ipc socket (a directory only we may use). */
    const char *endpoint = io->core->endpoint;
    const char *slash = strrchr(endpoint, '/');
    if (strncmp(endpoint, "ipc://", 6) == 0 && slash)
        snprintf(io->engine_log, sizeof io->engine_log, "%.*s/engine.log", (int)(slash - endpoint - 6), endpoint + 6);
    else
        snprintf(io->engine_log, sizeof io->engine_log, "/dev/null");
}

/* Start `<engine_command> serve --endpoint E --idle-exit N` detached (its own session, stdio to
 * the log, no descriptors of the host) through /bin/sh, which exits at once. [io-thread] */
static bool spawn_engine(io_state *io)
{
    const char *endpoint = io->core->endpoint;
    if (strchr(endpoint, '\'') || strchr(io->engine_log, '\''))
        return false;
    char directory[512];
    snprintf(directory, sizeof directory, "%s", io->engine_log);
    char *slash = strrchr(directory, '/');
    if (slash && strcmp(io->engine_log, "/dev/null") != 0) {
        *slash = '\0';
        mkdir(directory, 0700);         /* the engine checks its owner and mode */
    }
    char script[1600];
    snprintf(script, sizeof script, "exec %s serve --endpoint '%s' --idle-exit %d </dev/null >>'%s' 2>&1 &",
             io->engine_command, endpoint, ENGINE_IDLE_EXIT_S, io->engine_log);
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_t actions;
    sigset_t none, defaults;
    sigemptyset(&none);
    sigfillset(&defaults);
    posix_spawnattr_init(&attributes);
    posix_spawnattr_setsigmask(&attributes, &none);          /* not the host's blocked signals */
    posix_spawnattr_setsigdefault(&attributes, &defaults);   /* nor its ignored ones */
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    char *argv[] = {"sh", "-c", script, NULL};
    pid_t pid;
    int failed = posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    if (failed)
        return false;
    int status;
    waitpid(pid, &status, 0);           /* sh backgrounds the engine and exits */
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* True while an engine started by this process for our endpoint may still come up (starting
 * one now if none is), so the instance waits for it instead of giving up. [io-thread] */
static bool engine_starting(io_state *io, double now)
{
    if (!io->launch_configured)
        configure_launch(io);
    if (!io->auto_launch || io->core->endpoint_error[0])
        return false;
    pthread_mutex_lock(&launch_lock);
    bool starting = strcmp(launch_endpoint, io->core->endpoint) == 0 && now - launch_at < ENGINE_START_S;
    if (!starting) {
        char text[900];
        starting = spawn_engine(io);
        if (starting) {
            snprintf(launch_endpoint, sizeof launch_endpoint, "%s", io->core->endpoint);
            launch_at = now;
            io->launched = true;
            atomic_store(&io->core->engine_launched, true);
            snprintf(text, sizeof text, "no engine answered on %.200s: started `%.300s serve` (log: %.200s; "
                     "LIVEDIFF_AUTO_LAUNCH=0 turns this off)", io->core->endpoint, io->engine_command, io->engine_log);
        } else {
            snprintf(text, sizeof text, "could not start the engine with `%.300s` (set LIVEDIFF_ENGINE_COMMAND "
                     "or engine_command in livediff/plugin.conf)", io->engine_command);
        }
        log_line(io, text);
    }
    pthread_mutex_unlock(&launch_lock);
    return starting;
}

/* ---------------------------------------------------------------- [io-thread] liveness */

/* Give up on the engine's session: play silence and HELLO again. [io-thread] */
static void lose_session(io_state *io)
{
    io->welcomed = false;
    io->run_frames = 0;
    retire_timeline(io);
    set_state(io, LD_ENGINE_DEAD);
}

/* [io-thread] */
static void check_liveness(io_state *io, double now)
{
    ld_core *core = io->core;
    if (io->welcomed && now - io->last_heard > ENGINE_SILENT_S) {
        log_line(io, "engine silent for 2 s: treating it as dead, playing silence, retrying HELLO");
        atomic_store(&connect_logged, false);
        lose_session(io);
    }
    if (io->welcomed)
        return;
    if (now - fmax(io->started, io->last_heard) > LAUNCH_AFTER_S && engine_starting(io, now)) {
        set_state(io, LD_ENGINE_CONNECTING);    /* offline waits wait for the engine coming up */
        return;
    }
    if (atomic_load(&core->engine_state) == LD_ENGINE_CONNECTING
        && now - io->started > (atomic_load(&engine_absent) ? ABSENT_ANSWER_S : FIRST_ANSWER_S)) {
        atomic_store(&engine_absent, true);
        char text[900];
        if (io->launched)
            snprintf(text, sizeof text, "the engine started with `%.300s` did not answer within %.0f s (see %.200s); "
                     "playing silence, retrying HELLO", io->engine_command, ENGINE_START_S, io->engine_log);
        else
            snprintf(text, sizeof text, "no engine answered (start one with `livediff serve`); playing silence, "
                     "retrying HELLO");
        log_once(io, text);
        set_state(io, LD_ENGINE_DEAD);
    }
}

/* The host's speed, from the audio thread's progress: see INFER_* above. Hosts that label their
 * blocks offline are left alone (they wait anyway). [io-thread] */
static void infer_render(io_state *io, double now)
{
    ld_core *core = io->core;
    if (!core->infer_render)
        return;
    progress_sample *history = io->progress;
    uint32_t count = io->progress_count;
    if (count && now - history[(count - 1) % INFER_HISTORY].wall < INFER_SAMPLE_S)
        return;
    progress_sample sample = {now, atomic_load(&core->frames_processed), atomic_load(&core->wait_ns) * 1e-9};
    history[count % INFER_HISTORY] = sample;
    io->progress_count = ++count;
    bool inferred = atomic_load(&core->render_inferred);
    bool host_offline = io->have_latest && io->latest_mode == LD_MODE_OFFLINE
                     && !(io->latest.flags & LD_TRANSPORT_RENDER_INFERRED);
    double window = inferred ? INFER_LEAVE_S : INFER_WINDOW_S;
    const progress_sample *old = NULL;     /* the oldest sample inside the window */
    for (uint32_t back = 1; back < count && back < INFER_HISTORY; back++) {
        const progress_sample *candidate = &history[(count - 1 - back) % INFER_HISTORY];
        if (now - candidate->wall > window)
            break;
        old = candidate;
    }
    if (!old)
        return;
    double audio = (double)(sample.frames - old->frames) / core->sample_rate;
    double busy = fmax(now - old->wall - (sample.wait - old->wait), 1e-3);
    char text[240];
    if (!inferred && !host_offline && audio >= INFER_ENTER_AUDIO_S && audio >= INFER_RATIO * busy) {
        atomic_store(&core->render_inferred, true);
        snprintf(text, sizeof text, "the host processes %.0fx faster than real time but calls it real time (no "
                 "clap.render, or an export labelled realtime): rendering offline, waiting for generated audio", audio / busy);
        log_line(io, text);
    } else if (inferred && (host_offline || (now - old->wall >= 0.9 * INFER_LEAVE_S && audio < INFER_LEAVE_RATIO * busy))) {
        atomic_store(&core->render_inferred, false);
        log_line(io, "the host processes at real-time speed again (or stopped): realtime, no waiting");
    }
}

/* [io-thread] */
static void report_problems(io_state *io)
{
    static const char *const what[] = {"a tempo", "a time signature", "a position"};
    uint32_t problems = atomic_exchange(&io->core->host_problems, 0);
    for (int bit = 0; bit < 3; bit++) {
        if (problems & (1u << bit)) {
            char text[160];
            snprintf(text, sizeof text, "the host sent %s that is not finite/in range; using the last good value "
                     "(tempo_bpm parameter, 4/4 or the shim's own position)", what[bit]);
            log_once(io, text);
        }
    }
}

/* At most every few seconds, so a long bounce without an engine does not flood the log; `final`
 * (the thread stopping) reports the total, which may include blocks after the last report. [io-thread] */
static void report_offline_timeouts(io_state *io, double now, bool final)
{
    ld_core *core = io->core;
    uint64_t count = atomic_load(&core->offline_timeouts);
    if (final ? count > 0 : count != core->logged_timeouts && now - core->logged_timeouts_at >= LOG_INTERVAL_S) {
        char text[200];
        snprintf(text, sizeof text, "offline render: %llu block(s) %s emitted silence because no generated "
                 "audio arrived in time (LD_ERR_OFFLINE_TIMEOUT); the bounce is incomplete",
                 (unsigned long long)count, final ? "in all" : "so far");
        log_line(io, text);
        core->logged_timeouts = count;
        core->logged_timeouts_at = now;
    }
}

/* ---------------------------------------------------------------- [io-thread] main loop */

/* [io-thread] */
static bool open_socket(io_state *io, void *ctx)
{
    ld_core *core = io->core;
    if (!ctx || core->endpoint_error[0]) {
        log_once(io, core->endpoint_error[0] ? core->endpoint_error : "no ZeroMQ context");
        set_state(io, LD_ENGINE_DEAD);
        return false;
    }
    io->socket = zmq_socket(ctx, ZMQ_DEALER);
    if (!io->socket)
        return false;
    uint8_t identity[8];
    for (int i = 0; i < 8; i++)
        identity[i] = (uint8_t)(core->instance_id >> (8 * i));
    int zero = 0, one = 1, send_queue = 256;
    int64_t max_message = LD_MAX_MESSAGE_BYTES;
    zmq_setsockopt(io->socket, ZMQ_ROUTING_ID, identity, sizeof identity);
    zmq_setsockopt(io->socket, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(io->socket, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(io->socket, ZMQ_SNDHWM, &send_queue, sizeof send_queue);
    zmq_setsockopt(io->socket, ZMQ_MAXMSGSIZE, &max_message, sizeof max_message);
    if (zmq_connect(io->socket, core->endpoint) != 0) {
        char text[256];
        snprintf(text, sizeof text, "cannot connect to %.160s: %s", core->endpoint, zmq_strerror(errno));
        log_once(io, text);
        zmq_close(io->socket);
        io->socket = NULL;
        set_state(io, LD_ENGINE_DEAD);
        return false;
    }
    return true;
}

/* [io-thread] */
static void close_socket(io_state *io)
{
    if (!io->socket)
        return;
    if (io->hello_sent) {               /* also before WELCOME: the session may just be opening */
        send_bye(io);
        int linger = BYE_LINGER_MS;     /* long enough to deliver BYE, short enough to never hang */
        zmq_setsockopt(io->socket, ZMQ_LINGER, &linger, sizeof linger);
    }
    zmq_close(io->socket);
    io->socket = NULL;
}

void *ld_io_thread_main(void *arg)
{
    ld_core *core = arg;
    io_state *io = calloc(1, sizeof *io);
    size_t max_payload = (size_t)core->piece * core->channels * 2 * sizeof(float);
    size_t run_bytes = (size_t)LD_MAX_AUDIO_FRAMES * core->channels * sizeof(float);
    if (io) {
        io->payload = malloc(max_payload);
        io->run_input = malloc(run_bytes);
        io->run_sidechain = malloc(run_bytes);
    }
    if (!io || !io->payload || !io->run_input || !io->run_sidechain) {
        fprintf(stderr, "livediff: out of memory starting the I/O thread\n");
        atomic_store(&core->engine_state, LD_ENGINE_DEAD);
        if (io) {
            free(io->payload);
            free(io->run_input);
            free(io->run_sidechain);
        }
        free(io);
        return NULL;
    }
    io->core = core;
    msgpack_sbuffer_init(&io->buffer);
    msgpack_packer_init(&io->packer, &io->buffer, msgpack_sbuffer_write);
    io->started = ld_now_s();
    bool connected = open_socket(io, core->zmq_context);

    while (!atomic_load(&core->io_stop)) {
        double now = ld_now_s();
        if (connected) {
            char problem[sizeof core->endpoint_error];
            if (!io->welcomed && now >= io->next_hello && ld_endpoint_problem(core->endpoint, problem, sizeof problem)) {
                log_once(io, problem);      /* the directory was taken over since prepare: stay away */
                set_state(io, LD_ENGINE_DEAD);
                io->next_hello = now + HELLO_INTERVAL_S;
            } else if (!io->welcomed && now >= io->next_hello) {  /* unsent (not connected yet): retry soon */
                io->next_hello = now + (send_hello(io) ? HELLO_INTERVAL_S : HELLO_RETRY_S);
            }
            zmq_pollitem_t item = {.socket = io->socket, .events = ZMQ_POLLIN};
            if (zmq_poll(&item, 1, POLL_MS) > 0)
                receive_all(io, now);
            check_liveness(io, now);
        } else {
            struct timespec step = {0, POLL_MS * 1000000L};
            nanosleep(&step, NULL);
        }
        drain_ring(io, now);
        ld_timeline *timeline = atomic_load(&core->published);   /* only this thread retires it */
        if (timeline && !ld_timeline_intact(timeline)) {
            log_once(io, "the engine's segment shrank under its mapping (a broken engine): no longer reading it, "
                     "playing silence, retrying HELLO");
            lose_session(io);
            io->next_hello = now + HELLO_INTERVAL_S;
            timeline = NULL;
        }
        if (timeline)
            ld_timeline_prefault(timeline);
        if (io->welcomed) {
            /* While blocks flow, drain_ring sends a change in order with them. */
            if (now - io->latest_at >= PARAMS_IDLE_S && atomic_load(&core->params_dirty))
                send_params(io);
            if (io->have_latest && now - io->sent_at >= TRANSPORT_INTERVAL_S && now - io->latest_at < 0.5)
                send_transport(io, &io->latest, io->latest_mode, now);
            /* Keep-alive whatever the audio thread does: a host that does not call process()
             * while stopped, or an offline wait, must not let the engine close the session.
             * PARAMS with unchanged values changes nothing in the engine. */
            if (now - io->last_send >= KEEPALIVE_S && atomic_load(&core->params_version) == io->params_heard)
                send_params(io);
        }
        infer_render(io, now);
        report_problems(io);
        report_offline_timeouts(io, now, false);
    }

    drain_ring(io, ld_now_s());
    flush_audio(io);
    report_offline_timeouts(io, ld_now_s(), true);
    close_socket(io);
    retire_timeline(io);
    msgpack_sbuffer_destroy(&io->buffer);
    free(io->payload);
    free(io->run_input);
    free(io->run_sidechain);
    free(io);
    return NULL;
}
