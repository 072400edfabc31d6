/*
 * livediff_shm.h — the one source of truth shared by the C shim and the Python engine.
 *
 * It holds the wire-protocol constants (message types, msgpack map keys, error codes,
 * parameter ids and ranges) and the shared-memory "timeline store" layout.
 * Python reads the block between LIVEDIFF_CDEF_BEGIN and LIVEDIFF_CDEF_END with
 * cffi's ffi.cdef() (bridge/layout.py), so that block may only contain what cffi parses:
 * enums with explicit values, plain structs and fixed-width integer/float types.
 * Do not add #if / #include / string macros inside it.
 *
 * All messages are msgpack maps whose keys are the integer LD_KEY_* values below and
 * whose LD_KEY_TYPE entry is one LD_MSG_* value. docs/protocol.md documents every field.
 */
#ifndef LIVEDIFF_SHM_H
#define LIVEDIFF_SHM_H

#include <stdint.h>

/* LIVEDIFF_CDEF_BEGIN */

enum ld_protocol {
    LD_PROTOCOL_VERSION = 2,            /* 2: TRANSPORT carries LD_KEY_GRID */
    LD_SHM_LAYOUT_VERSION = 2,          /* 2: ld_slot.grid */
    LD_SHM_MAGIC = 0x4C444946,          /* "LDIF" */
    LD_MAX_MESSAGE_BYTES = 1048576,     /* engine rejects larger frames */
    LD_MAX_AUDIO_FRAMES = 16384,        /* per AUDIO message */
    LD_MAX_CHANNELS = 2,
    LD_SHM_MAX_SLOTS = 32,
    LD_STATUS_TEXT_BYTES = 256,
    LD_SEAM_MS = 30                     /* seam crossfade: the engine bakes a sin fade-in into a window's
                                           first LD_SEAM_MS (round(rate * LD_SEAM_MS / 1000) frames); after
                                           a preroll the shim adds the dry input's matching cos fade-out */
};

/* Host sample rates the engine runs at (the shim refuses others in setupProcessing/activate). */
enum ld_sample_rate {
    LD_RATE_22050 = 22050, LD_RATE_32000 = 32000, LD_RATE_44100 = 44100, LD_RATE_48000 = 48000,
    LD_RATE_88200 = 88200, LD_RATE_96000 = 96000, LD_RATE_176400 = 176400, LD_RATE_192000 = 192000
};

/* Message types (value of LD_KEY_TYPE). */
enum ld_msg_type {
    /* plugin -> engine */
    LD_MSG_HELLO = 1,
    LD_MSG_TRANSPORT = 2,
    LD_MSG_AUDIO = 3,
    LD_MSG_PARAMS = 4,
    LD_MSG_BYE = 5,
    /* engine -> plugin */
    LD_MSG_WELCOME = 16,
    LD_MSG_STATUS = 17,
    LD_MSG_ERROR = 18
};

/* msgpack map keys. */
enum ld_key {
    LD_KEY_TYPE = 0,             /* uint: ld_msg_type */
    LD_KEY_VERSION = 1,          /* uint: LD_PROTOCOL_VERSION (hello, welcome) */
    LD_KEY_INSTANCE = 2,         /* uint64: plugin instance id (every plugin message) */
    LD_KEY_FORMAT = 3,           /* str: "vst3" | "clap" | "harness" */
    LD_KEY_SAMPLE_RATE = 4,      /* uint: host sample rate in Hz */
    LD_KEY_MAX_BLOCK = 5,        /* uint: largest block the host will send */
    LD_KEY_CHANNELS = 6,         /* uint: channels of main input / output (1..LD_MAX_CHANNELS) */
    LD_KEY_PROCESS_MODE = 7,     /* uint: ld_process_mode */
    LD_KEY_EPOCH = 8,            /* uint32: transport epoch, bumped by the shim on every discontinuity */
    LD_KEY_FLAGS = 9,            /* uint: ld_transport_flags */
    LD_KEY_TEMPO = 10,           /* float64: BPM at the first frame */
    LD_KEY_POS_SAMPLES = 11,     /* int64: song position of the first frame, in samples */
    LD_KEY_POS_BEATS = 12,       /* float64: song position of the first frame, in quarter notes */
    LD_KEY_BAR_START_BEATS = 13, /* float64: quarter-note position of the bar containing the first frame */
    LD_KEY_TSIG_NUM = 14,        /* uint */
    LD_KEY_TSIG_DEN = 15,        /* uint */
    LD_KEY_LOOP_START_BEATS = 16,/* float64, meaningful when LD_TRANSPORT_LOOP_ACTIVE */
    LD_KEY_LOOP_END_BEATS = 17,  /* float64 */
    LD_KEY_FRAMES = 18,          /* uint: frames in this audio message */
    LD_KEY_INPUT = 19,           /* bin: float32 little-endian, planar [channels][frames] main input */
    LD_KEY_SIDECHAIN = 20,       /* bin or nil: same layout, sidechain input */
    LD_KEY_PARAMS = 21,          /* map: ld_param id -> float64 value */
    LD_KEY_UNDERRUNS = 22,       /* uint64: blocks the shim played without a window (cumulative) */
    LD_KEY_OFFLINE_TIMEOUTS = 23,/* uint64: offline waits that gave up (cumulative) */
    LD_KEY_SHM_NAME = 24,        /* str: POSIX shm name, e.g. "/livediff-<pid>-<instance>" */
    LD_KEY_LAYOUT_VERSION = 25,  /* uint: LD_SHM_LAYOUT_VERSION */
    LD_KEY_LATENCY_SAMPLES = 26, /* uint: latency the plugin reports to the host */
    LD_KEY_CODE = 27,            /* uint: ld_error (error, status) */
    LD_KEY_MESSAGE = 28,         /* str: human-readable text naming what was wrong and what is allowed */
    LD_KEY_REF_TYPE = 29,        /* uint: message type an error refers to, 0 if unknown */
    LD_KEY_GENERATOR = 30,       /* str: generator serving the session ("diffusion", "loop", "custom", "sao_small") */
    LD_KEY_WINDOWS = 31,         /* uint64: windows published so far (status) */
    LD_KEY_DROPPED_FRAMES = 32,  /* uint64: input frames the shim dropped because its ring was full */
    LD_KEY_CONTEXT_SOURCE = 33,  /* str: where the latest window's context came from: "main" | "sidechain" | "both" (status) */
    LD_KEY_GRID = 34             /* uint32: grid sequence, bumped by the shim when epoch, tempo, meter or loop changes */
};

enum ld_process_mode {
    LD_MODE_REALTIME = 0,
    LD_MODE_OFFLINE = 1
};

/* Wire ranges of positions (docs/protocol.md, "Fields"): the engine refuses a message with a
 * value outside them (LD_ERR_TYPE) before it reaches a session; the shim's clock treats host
 * positions outside them as garbage. |samples| <= 2^40 (66 days at 192 kHz); |beats| <= 2^30,
 * which any sample position in range converts to at up to 1000 BPM and 22.05 kHz. Grid math
 * on them stays exact to a sample (beats x samples per beat < 2^53). */
enum ld_wire_range {
    LD_POS_BEATS_BITS = 30,     /* POS_BEATS, BAR_START_BEATS, LOOP_START_BEATS, LOOP_END_BEATS */
    LD_POS_SAMPLES_BITS = 40    /* POS_SAMPLES */
};

enum ld_transport_flags {
    LD_TRANSPORT_PLAYING = 1,
    LD_TRANSPORT_LOOP_ACTIVE = 2,
    LD_TRANSPORT_HOST_CLOCK = 4,     /* position came from the host; unset = the shim's own clock */
    LD_TRANSPORT_TEMPO_VALID = 8,
    LD_TRANSPORT_TSIG_VALID = 16,
    LD_TRANSPORT_RENDER_INFERRED = 32,/* PROCESS_MODE offline because the host runs faster than real time
                                         without saying it renders (e.g. no clap.render) */
    LD_TRANSPORT_SYNC_SWITCH = 64     /* this epoch began because the sync_mode parameter moved the
                                         position (onto the host's), not because the host jumped */
};

enum ld_error {
    LD_OK = 0,
    LD_ERR_MALFORMED = 1,         /* not msgpack, not a map, or a required key missing */
    LD_ERR_VERSION = 2,           /* protocol or layout version not supported */
    LD_ERR_OVERSIZED = 3,         /* message or audio block over the limits above */
    LD_ERR_TYPE = 4,              /* a field has the wrong type or an out-of-range value */
    LD_ERR_UNKNOWN_SESSION = 5,   /* message before hello, or after bye */
    LD_ERR_SAMPLE_RATE = 6,       /* sample rate not supported */
    LD_ERR_UNKNOWN_MESSAGE = 7,   /* LD_KEY_TYPE not a known plugin->engine type */
    LD_ERR_GENERATOR = 8,         /* the generator failed for a window */
    LD_ERR_ENGINE_GONE = 9,       /* shim side: no engine answered (status only) */
    LD_ERR_OFFLINE_TIMEOUT = 10,  /* shim side: an offline wait gave up (status only) */
    LD_ERR_BUSY = 11,             /* HELLO refused: the engine serves its --max-sessions already */
    LD_ERR_INTERNAL = 12          /* the engine failed handling this session's message; it closed the session */
};

/* Plugin parameters: ids are stable (they are saved in host projects). */
enum ld_param {
    LD_PARAM_TEMPO_BPM = 0,       /* fallback tempo when the host position does not advance */
    LD_PARAM_SEED = 1,
    LD_PARAM_STYLE = 2,
    LD_PARAM_WINDOW_BARS = 3,
    LD_PARAM_LOOKAHEAD = 4,       /* windows kept generated ahead of the playhead */
    LD_PARAM_CONTEXT_BARS = 5,
    LD_PARAM_UNDERRUN_POLICY = 6, /* ld_underrun_policy */
    LD_PARAM_SYNC_MODE = 7,       /* ld_sync_mode */
    LD_PARAM_GENERATOR = 8,       /* ld_generator */
    LD_PARAM_MIX = 9,             /* percent wet: 0 = dry input only, 100 = generated only */
    LD_PARAM_BYPASS = 10,         /* ld_bypass: on = the dry input, latency-aligned; the engine keeps going */
    LD_PARAM_CONTEXT_SOURCE = 11, /* ld_context_source: what the windows continue */
    LD_PARAM_PREROLL = 12,        /* ld_preroll: what plays while the lookahead fills (LD_WINDOW_PREROLL slots) */
    LD_PARAM_VARIATION = 13,      /* percent of the model's small changes to the track's bar that pass */
    LD_PARAM_SOUND = 14,          /* whose steps, FX chain and gain this instance's windows get: 0 = the engine's, else a shipped preset */
    LD_PARAM_COUNT = 15           /* every parameter id is below this */
};

/* Parameter ranges (inclusive) and defaults; every parameter is integer-valued except
 * tempo, which takes any value in its range. */
enum ld_param_range {
    LD_TEMPO_MIN = 20, LD_TEMPO_MAX = 300, LD_TEMPO_DEFAULT = 120,
    LD_SEED_MIN = 0, LD_SEED_MAX = 999, LD_SEED_DEFAULT = 0,  /* pedalboard reaches a stepped value only on its 1001-point grid */
    LD_STYLE_MIN = 0, LD_STYLE_MAX = 5, LD_STYLE_DEFAULT = 0,
    LD_STYLE_COUNT = 6,           /* trained styles (ids 0..5); names in presets/styles/ */
    LD_WINDOW_BARS_MIN = 1, LD_WINDOW_BARS_MAX = 4, LD_WINDOW_BARS_DEFAULT = 1,
    LD_LOOKAHEAD_MIN = 1, LD_LOOKAHEAD_MAX = 8, LD_LOOKAHEAD_DEFAULT = 2,
    LD_CONTEXT_BARS_MIN = 1, LD_CONTEXT_BARS_MAX = 8, LD_CONTEXT_BARS_DEFAULT = 2,
    LD_MIX_MIN = 0, LD_MIX_MAX = 100, LD_MIX_DEFAULT = 100,
    LD_VARIATION_MIN = 0, LD_VARIATION_MAX = 100, LD_VARIATION_DEFAULT = 0,
    LD_SOUND_MIN = 0, LD_SOUND_MAX = 6, LD_SOUND_DEFAULT = 0,
    LD_SOUND_COUNT = 7            /* "engine", then the presets in presets/ in the order of their `id`, by file name ("house") */
};

enum ld_underrun_policy { LD_UNDERRUN_SILENCE = 0, LD_UNDERRUN_HOLD = 1, LD_UNDERRUN_DRY = 2 };
enum ld_sync_mode { LD_SYNC_AUTO = 0, LD_SYNC_HOST = 1, LD_SYNC_FREE = 2 };
enum ld_generator { LD_GENERATOR_DIFFUSION = 0, LD_GENERATOR_LOOP = 1, LD_GENERATOR_CUSTOM = 2, LD_GENERATOR_SAO_SMALL = 3 };
enum ld_bypass { LD_BYPASS_OFF = 0, LD_BYPASS_ON = 1 };
enum ld_preroll { LD_PREROLL_DRY = 0, LD_PREROLL_SILENCE = 1 };
enum ld_context_source {         /* auto: the sidechain while it sounds, else main (docs/protocol.md, "Sidechain") */
    LD_CONTEXT_SOURCE_AUTO = 0, LD_CONTEXT_SOURCE_MAIN = 1, LD_CONTEXT_SOURCE_SIDECHAIN = 2, LD_CONTEXT_SOURCE_BOTH = 3
};

/* ---------------------------------------------------------------------------------
 * Shared memory: a timeline store, one POSIX segment per plugin instance, mode 0600.
 * The engine creates it on hello and is its only writer; the shim maps it read-write
 * but only reads slots.
 *
 * A slot holds one stretch of generated audio addressed by timeline position:
 * it covers host samples [start_sample, start_sample + frames) of transport epoch `epoch`.
 * A window longer than slot_capacity_frames is published as several consecutive slots.
 *
 * Publication is a sequence lock on `seq`: the writer makes seq odd, writes the slot
 * header and audio, then makes seq even (x86-64 keeps stores in program order).
 * A reader loads seq (acquire), copies, fences, reloads seq, and discards the copy if
 * seq was odd or changed. When two READY slots cover the same sample for the same
 * epoch, the one with the larger window_id wins (a replacement, e.g. after a tempo change).
 * Offline, the shim plays a block only from slots whose `grid` equals the block's grid
 * sequence (LD_KEY_GRID): audio made (or re-acknowledged) for the tempo map that block
 * belongs to. The engine acknowledges every window that still fits when the grid changes
 * (rewriting `grid` under the seqlock) and remakes or stretches the others.
 *
 * Audio of slot i, channel c starts at byte
 *   audio_offset + ((i * channels + c) * slot_capacity_frames) * sizeof(float)
 * i.e. planar float32, one block of slot_capacity_frames per channel.
 * --------------------------------------------------------------------------------- */

enum ld_slot_state { LD_SLOT_EMPTY = 0, LD_SLOT_READY = 1 };

enum ld_window_flags {
    LD_WINDOW_PREROLL = 1,      /* nothing to continue yet: published silent so offline waits end;
                                   the shim plays the dry input or silence (LD_PARAM_PREROLL) */
    LD_WINDOW_STRETCHED = 2,    /* time-stretched stand-in after a tempo change */
    LD_WINDOW_GENERATED = 4     /* audio came from the generator */
};

typedef struct ld_slot {
    uint32_t seq;               /* sequence lock, odd while the engine writes */
    uint32_t state;             /* ld_slot_state */
    uint32_t epoch;             /* transport epoch this audio belongs to */
    uint32_t flags;             /* ld_window_flags */
    int64_t start_sample;       /* host timeline sample of the first frame */
    uint32_t frames;            /* valid frames, <= slot_capacity_frames */
    uint32_t bar_index;         /* index of the bar the window starts on */
    double start_beat;          /* quarter-note position of the first frame */
    double length_beats;
    double tempo_bpm;           /* tempo the audio was generated for */
    uint64_t window_id;         /* engine-wide increasing id; larger replaces smaller */
    uint32_t grid;              /* the LD_KEY_GRID this audio was made for (offline plays only its block's grid) */
    uint32_t reserved;          /* zero; keeps the slot a multiple of 8 bytes */
} ld_slot;

typedef struct ld_shm_header {
    uint32_t magic;             /* LD_SHM_MAGIC */
    uint32_t layout_version;    /* LD_SHM_LAYOUT_VERSION */
    uint32_t header_bytes;      /* sizeof(ld_shm_header) */
    uint32_t slot_count;        /* slots in use, <= LD_SHM_MAX_SLOTS */
    uint32_t slot_capacity_frames;
    uint32_t channels;
    uint32_t sample_rate;
    uint32_t status_code;       /* ld_error of the last engine-side problem, LD_OK if none */
    uint64_t audio_offset;      /* byte offset of slot 0's audio from the segment start */
    uint64_t total_bytes;       /* segment size */
    uint64_t status_seq;        /* bumped whenever status_text changes */
    char status_text[256];      /* LD_STATUS_TEXT_BYTES, NUL-terminated */
    ld_slot slots[32];          /* LD_SHM_MAX_SLOTS */
} ld_shm_header;

/* LIVEDIFF_CDEF_END */

#endif /* LIVEDIFF_SHM_H */
