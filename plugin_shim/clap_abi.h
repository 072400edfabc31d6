/*
 * clap_abi.h — our own declarations of the subset of the CLAP 1.2 ABI the shim uses,
 * written from the documented structs (entry, factory, plugin, process, events, transport
 * and the audio-ports, params, latency, render and state extensions).
 *
 * The block between LIVEDIFF_CDEF_BEGIN and LIVEDIFF_CDEF_END is also read by cffi in the
 * test host (tests/host/clap_host.py), so it holds only what cffi parses: no macros, literal
 * array sizes (256 = CLAP_NAME_SIZE, 1024 = CLAP_PATH_SIZE).
 */
#ifndef LIVEDIFF_CLAP_ABI_H
#define LIVEDIFF_CLAP_ABI_H

#include <stdbool.h>
#include <stdint.h>

#define CLAP_INVALID_ID UINT32_MAX
#define CLAP_FACTORY_ID "clap.plugin-factory"
#define CLAP_EXT_AUDIO_PORTS "clap.audio-ports"
#define CLAP_EXT_PARAMS "clap.params"
#define CLAP_EXT_LATENCY "clap.latency"
#define CLAP_EXT_RENDER "clap.render"
#define CLAP_EXT_STATE "clap.state"
#define CLAP_PORT_STEREO "stereo"
#define CLAP_BEATTIME_FACTOR ((int64_t)1 << 31)
#define CLAP_SECTIME_FACTOR ((int64_t)1 << 31)

#define CLAP_VERSION_INIT {1, 2, 2}

/* LIVEDIFF_CDEF_BEGIN */

typedef uint32_t clap_id;
typedef struct clap_version { uint32_t major, minor, revision; } clap_version;

typedef struct clap_host {
    clap_version clap_version;
    void *host_data;
    const char *name, *vendor, *url, *version;
    const void *(*get_extension)(const struct clap_host *host, const char *extension_id);
    void (*request_restart)(const struct clap_host *host);
    void (*request_process)(const struct clap_host *host);
    void (*request_callback)(const struct clap_host *host);
} clap_host;

typedef struct clap_plugin_descriptor {
    clap_version clap_version;
    const char *id, *name, *vendor, *url, *manual_url, *support_url, *version, *description;
    const char *const *features;
} clap_plugin_descriptor;

/* Events. */
enum { CLAP_CORE_EVENT_SPACE_ID = 0 };
enum { CLAP_EVENT_PARAM_VALUE = 5, CLAP_EVENT_TRANSPORT = 9 };

typedef struct clap_event_header {
    uint32_t size, time;
    uint16_t space_id, type;
    uint32_t flags;
} clap_event_header;

typedef struct clap_event_param_value {
    clap_event_header header;
    clap_id param_id;
    void *cookie;
    int32_t note_id;
    int16_t port_index, channel, key;
    double value;
} clap_event_param_value;

enum {
    CLAP_TRANSPORT_HAS_TEMPO = 1 << 0,
    CLAP_TRANSPORT_HAS_BEATS_TIMELINE = 1 << 1,
    CLAP_TRANSPORT_HAS_SECONDS_TIMELINE = 1 << 2,
    CLAP_TRANSPORT_HAS_TIME_SIGNATURE = 1 << 3,
    CLAP_TRANSPORT_IS_PLAYING = 1 << 4,
    CLAP_TRANSPORT_IS_RECORDING = 1 << 5,
    CLAP_TRANSPORT_IS_LOOP_ACTIVE = 1 << 6,
    CLAP_TRANSPORT_IS_WITHIN_PRE_ROLL = 1 << 7
};

typedef struct clap_event_transport {
    clap_event_header header;
    uint32_t flags;
    int64_t song_pos_beats;         /* clap_beattime */
    int64_t song_pos_seconds;       /* clap_sectime */
    double tempo, tempo_inc;
    int64_t loop_start_beats, loop_end_beats;
    int64_t loop_start_seconds, loop_end_seconds;
    int64_t bar_start;
    int32_t bar_number;
    uint16_t tsig_num, tsig_denom;
} clap_event_transport;

typedef struct clap_input_events {
    void *ctx;
    uint32_t (*size)(const struct clap_input_events *list);
    const clap_event_header *(*get)(const struct clap_input_events *list, uint32_t index);
} clap_input_events;

typedef struct clap_output_events {
    void *ctx;
    bool (*try_push)(const struct clap_output_events *list, const clap_event_header *event);
} clap_output_events;

/* Process. */
typedef struct clap_audio_buffer {
    float **data32;
    double **data64;
    uint32_t channel_count, latency;
    uint64_t constant_mask;
} clap_audio_buffer;

typedef struct clap_process {
    int64_t steady_time;
    uint32_t frames_count;
    const clap_event_transport *transport;     /* NULL: free-running host */
    const clap_audio_buffer *audio_inputs;
    clap_audio_buffer *audio_outputs;
    uint32_t audio_inputs_count, audio_outputs_count;
    const clap_input_events *in_events;
    const clap_output_events *out_events;
} clap_process;

enum { CLAP_PROCESS_ERROR = 0, CLAP_PROCESS_CONTINUE = 1, CLAP_PROCESS_CONTINUE_IF_NOT_QUIET = 2,
       CLAP_PROCESS_TAIL = 3, CLAP_PROCESS_SLEEP = 4 };

typedef struct clap_plugin {
    const clap_plugin_descriptor *desc;
    void *plugin_data;
    bool (*init)(const struct clap_plugin *plugin);
    void (*destroy)(const struct clap_plugin *plugin);
    bool (*activate)(const struct clap_plugin *plugin, double sample_rate, uint32_t min_frames, uint32_t max_frames);
    void (*deactivate)(const struct clap_plugin *plugin);
    bool (*start_processing)(const struct clap_plugin *plugin);
    void (*stop_processing)(const struct clap_plugin *plugin);
    void (*reset)(const struct clap_plugin *plugin);
    int32_t (*process)(const struct clap_plugin *plugin, const clap_process *process);
    const void *(*get_extension)(const struct clap_plugin *plugin, const char *id);
    void (*on_main_thread)(const struct clap_plugin *plugin);
} clap_plugin;

typedef struct clap_plugin_factory {
    uint32_t (*get_plugin_count)(const struct clap_plugin_factory *factory);
    const clap_plugin_descriptor *(*get_plugin_descriptor)(const struct clap_plugin_factory *factory, uint32_t index);
    const clap_plugin *(*create_plugin)(const struct clap_plugin_factory *factory, const clap_host *host, const char *plugin_id);
} clap_plugin_factory;

typedef struct clap_plugin_entry {
    clap_version clap_version;
    bool (*init)(const char *plugin_path);
    void (*deinit)(void);
    const void *(*get_factory)(const char *factory_id);
} clap_plugin_entry;

/* Extensions. */
enum { CLAP_AUDIO_PORT_IS_MAIN = 1 << 0 };

typedef struct clap_audio_port_info {
    clap_id id;
    char name[256];
    uint32_t flags, channel_count;
    const char *port_type;
    clap_id in_place_pair;
} clap_audio_port_info;

typedef struct clap_plugin_audio_ports {
    uint32_t (*count)(const clap_plugin *plugin, bool is_input);
    bool (*get)(const clap_plugin *plugin, uint32_t index, bool is_input, clap_audio_port_info *info);
} clap_plugin_audio_ports;

enum { CLAP_PARAM_IS_STEPPED = 1 << 0, CLAP_PARAM_IS_BYPASS = 1 << 4, CLAP_PARAM_IS_AUTOMATABLE = 1 << 5,
       CLAP_PARAM_IS_ENUM = 1 << 16 };

typedef struct clap_param_info {
    clap_id id;
    uint32_t flags;
    void *cookie;
    char name[256];
    char module[1024];
    double min_value, max_value, default_value;
} clap_param_info;

typedef struct clap_plugin_params {
    uint32_t (*count)(const clap_plugin *plugin);
    bool (*get_info)(const clap_plugin *plugin, uint32_t index, clap_param_info *info);
    bool (*get_value)(const clap_plugin *plugin, clap_id id, double *value);
    bool (*value_to_text)(const clap_plugin *plugin, clap_id id, double value, char *text, uint32_t size);
    bool (*text_to_value)(const clap_plugin *plugin, clap_id id, const char *text, double *value);
    void (*flush)(const clap_plugin *plugin, const clap_input_events *in, const clap_output_events *out);
} clap_plugin_params;

typedef struct clap_plugin_latency {
    uint32_t (*get)(const clap_plugin *plugin);
} clap_plugin_latency;

enum { CLAP_RENDER_REALTIME = 0, CLAP_RENDER_OFFLINE = 1 };

typedef struct clap_plugin_render {
    bool (*has_hard_realtime_requirement)(const clap_plugin *plugin);
    bool (*set)(const clap_plugin *plugin, int32_t mode);
} clap_plugin_render;

typedef struct clap_istream {
    void *ctx;
    int64_t (*read)(const struct clap_istream *stream, void *buffer, uint64_t size);
} clap_istream;

typedef struct clap_ostream {
    void *ctx;
    int64_t (*write)(const struct clap_ostream *stream, const void *buffer, uint64_t size);
} clap_ostream;

typedef struct clap_plugin_state {
    bool (*save)(const clap_plugin *plugin, const clap_ostream *stream);
    bool (*load)(const clap_plugin *plugin, const clap_istream *stream);
} clap_plugin_state;

/* LIVEDIFF_CDEF_END */

#endif
