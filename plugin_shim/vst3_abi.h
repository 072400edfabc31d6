/*
 * vst3_abi.h — our own declarations of the subset of the VST3 C ABI the shim uses, written
 * from the documented interfaces (vtable order, struct layouts, IDs). Linux x86-64: natural
 * alignment, no calling-convention attributes, interface IDs as four big-endian 32-bit words.
 */
#ifndef LIVEDIFF_VST3_ABI_H
#define LIVEDIFF_VST3_ABI_H

#include <stdbool.h>
#include <stdint.h>

typedef int32_t v3_result;
typedef uint8_t v3_tuid[16];
typedef uint16_t v3_char16;
typedef v3_char16 v3_str128[128];

enum {
    V3_OK = 0, V3_FALSE = 1, V3_INVALID_ARGUMENT = 2, V3_NOT_IMPLEMENTED = 3, V3_NO_INTERFACE = -1
};

/* The documented ID words w0..w3, laid out big-endian each (non-Windows byte order). */
#define V3_ID(w0, w1, w2, w3) {                                                        \
    (uint8_t)((w0) >> 24), (uint8_t)((w0) >> 16), (uint8_t)((w0) >> 8), (uint8_t)(w0), \
    (uint8_t)((w1) >> 24), (uint8_t)((w1) >> 16), (uint8_t)((w1) >> 8), (uint8_t)(w1), \
    (uint8_t)((w2) >> 24), (uint8_t)((w2) >> 16), (uint8_t)((w2) >> 8), (uint8_t)(w2), \
    (uint8_t)((w3) >> 24), (uint8_t)((w3) >> 16), (uint8_t)((w3) >> 8), (uint8_t)(w3) }

#define V3_FUNKNOWN_IID         V3_ID(0x00000000, 0x00000000, 0xC0000000, 0x00000046)
#define V3_PLUGIN_FACTORY_IID   V3_ID(0x7A4D811C, 0x52114A1F, 0xAED9D2EE, 0x0B43BF9F)
#define V3_PLUGIN_FACTORY2_IID  V3_ID(0x0007B650, 0xF24B4C0B, 0xA464EDB9, 0xF00B2ABB)
#define V3_PLUGIN_BASE_IID      V3_ID(0x22888DDB, 0x156E45AE, 0x8358B348, 0x08190625)
#define V3_COMPONENT_IID        V3_ID(0xE831FF31, 0xF2D54301, 0x928EBBEE, 0x25697802)
#define V3_AUDIO_PROCESSOR_IID  V3_ID(0x42043F99, 0xB7DA453C, 0xA569E79D, 0x9AAEC33D)
#define V3_EDIT_CONTROLLER_IID  V3_ID(0xDCD7BBE3, 0x7742448D, 0xA874AACC, 0x979C759E)
#define V3_PROCESS_CONTEXT_REQUIREMENTS_IID V3_ID(0x2A654303, 0xEF764E3D, 0x95B5FE83, 0x730EF6D0)

/* FUnknown: the first three slots of every vtable. */
#define V3_FUNKNOWN_METHODS                                                     \
    v3_result (*query_interface)(void *self, const v3_tuid iid, void **obj);   \
    uint32_t (*add_ref)(void *self);                                            \
    uint32_t (*release)(void *self)

typedef struct v3_funknown_vtbl { V3_FUNKNOWN_METHODS; } v3_funknown_vtbl;

/* IBStream (host-provided; we only call it). */
typedef struct v3_bstream_vtbl {
    V3_FUNKNOWN_METHODS;
    v3_result (*read)(void *self, void *buffer, int32_t bytes, int32_t *bytes_read);
    v3_result (*write)(void *self, void *buffer, int32_t bytes, int32_t *bytes_written);
    v3_result (*seek)(void *self, int64_t pos, int32_t mode, int64_t *result);
    v3_result (*tell)(void *self, int64_t *pos);
} v3_bstream_vtbl;
typedef struct v3_bstream { const v3_bstream_vtbl *vtbl; } v3_bstream;

/* IPluginFactory (+2). */
typedef struct v3_factory_info {
    char vendor[64];
    char url[256];
    char email[128];
    int32_t flags;
} v3_factory_info;

enum { V3_FACTORY_UNICODE = 1 << 4, V3_MANY_INSTANCES = 0x7FFFFFFF };

typedef struct v3_class_info {
    v3_tuid cid;
    int32_t cardinality;
    char category[32];
    char name[64];
} v3_class_info;

typedef struct v3_class_info2 {
    v3_tuid cid;
    int32_t cardinality;
    char category[32];
    char name[64];
    uint32_t class_flags;
    char sub_categories[128];
    char vendor[64];
    char version[64];
    char sdk_version[64];
} v3_class_info2;

typedef struct v3_factory_vtbl {
    V3_FUNKNOWN_METHODS;
    v3_result (*get_factory_info)(void *self, v3_factory_info *info);
    int32_t (*count_classes)(void *self);
    v3_result (*get_class_info)(void *self, int32_t index, v3_class_info *info);
    v3_result (*create_instance)(void *self, const v3_tuid cid, const v3_tuid iid, void **obj);
    v3_result (*get_class_info2)(void *self, int32_t index, v3_class_info2 *info);
} v3_factory_vtbl;

/* Buses and processing. */
enum { V3_AUDIO = 0, V3_EVENT = 1 };                 /* MediaType */
enum { V3_INPUT = 0, V3_OUTPUT = 1 };                /* BusDirection */
enum { V3_MAIN = 0, V3_AUX = 1 };                    /* BusType */
enum { V3_DEFAULT_ACTIVE = 1 };                      /* BusInfo flags */
enum { V3_REALTIME = 0, V3_PREFETCH = 1, V3_OFFLINE = 2 };  /* processMode */
enum { V3_SAMPLE32 = 0, V3_SAMPLE64 = 1 };
typedef uint64_t v3_speaker_arrangement;
#define V3_SPEAKER_MONO ((v3_speaker_arrangement)1 << 19)
#define V3_SPEAKER_STEREO ((v3_speaker_arrangement)3)

typedef struct v3_bus_info {
    int32_t media_type;
    int32_t direction;
    int32_t channel_count;
    v3_str128 name;
    int32_t bus_type;
    uint32_t flags;
} v3_bus_info;

typedef struct v3_routing_info {
    int32_t media_type;
    int32_t bus_index;
    int32_t channel;
} v3_routing_info;

typedef struct v3_process_setup {
    int32_t process_mode;
    int32_t symbolic_sample_size;
    int32_t max_samples_per_block;
    double sample_rate;
} v3_process_setup;

typedef struct v3_audio_bus_buffers {
    int32_t num_channels;
    uint64_t silence_flags;
    union {
        float **channel_buffers32;
        double **channel_buffers64;
    };
} v3_audio_bus_buffers;

/* ProcessContext state flags. */
enum {
    V3_CTX_PLAYING = 1 << 1,
    V3_CTX_CYCLE_ACTIVE = 1 << 2,
    V3_CTX_PROJECT_TIME_MUSIC_VALID = 1 << 9,
    V3_CTX_TEMPO_VALID = 1 << 10,
    V3_CTX_BAR_POSITION_VALID = 1 << 11,
    V3_CTX_CYCLE_VALID = 1 << 12,
    V3_CTX_TIME_SIG_VALID = 1 << 13
};

typedef struct v3_process_context {
    uint32_t state;
    double sample_rate;
    int64_t project_time_samples;
    int64_t system_time;
    int64_t continuous_time_samples;
    double project_time_music;
    double bar_position_music;
    double cycle_start_music;
    double cycle_end_music;
    double tempo;
    int32_t time_sig_numerator;
    int32_t time_sig_denominator;
    struct { uint8_t key_note, root_note; int16_t chord_mask; } chord;
    int32_t smpte_offset_subframes;
    struct { uint32_t frames_per_second, flags; } frame_rate;
    int32_t samples_to_next_clock;
} v3_process_context;

/* IParamValueQueue and IParameterChanges (host-provided). */
typedef struct v3_param_value_queue_vtbl {
    V3_FUNKNOWN_METHODS;
    uint32_t (*get_parameter_id)(void *self);
    int32_t (*get_point_count)(void *self);
    v3_result (*get_point)(void *self, int32_t index, int32_t *sample_offset, double *value);
    v3_result (*add_point)(void *self, int32_t sample_offset, double value, int32_t *index);
} v3_param_value_queue_vtbl;
typedef struct v3_param_value_queue { const v3_param_value_queue_vtbl *vtbl; } v3_param_value_queue;

typedef struct v3_parameter_changes_vtbl {
    V3_FUNKNOWN_METHODS;
    int32_t (*get_parameter_count)(void *self);
    v3_param_value_queue *(*get_parameter_data)(void *self, int32_t index);
    v3_param_value_queue *(*add_parameter_data)(void *self, const uint32_t *id, int32_t *index);
} v3_parameter_changes_vtbl;
typedef struct v3_parameter_changes { const v3_parameter_changes_vtbl *vtbl; } v3_parameter_changes;

typedef struct v3_process_data {
    int32_t process_mode;
    int32_t symbolic_sample_size;
    int32_t num_samples;
    int32_t num_inputs;
    int32_t num_outputs;
    v3_audio_bus_buffers *inputs;
    v3_audio_bus_buffers *outputs;
    v3_parameter_changes *input_parameter_changes;
    void *output_parameter_changes;
    void *input_events;
    void *output_events;
    v3_process_context *context;
} v3_process_data;

/* IPluginBase, IComponent, IAudioProcessor, IEditController. */
#define V3_PLUGIN_BASE_METHODS                                  \
    V3_FUNKNOWN_METHODS;                                        \
    v3_result (*initialize)(void *self, void *context);        \
    v3_result (*terminate)(void *self)

typedef struct v3_component_vtbl {
    V3_PLUGIN_BASE_METHODS;
    v3_result (*get_controller_class_id)(void *self, v3_tuid cid);
    v3_result (*set_io_mode)(void *self, int32_t mode);
    int32_t (*get_bus_count)(void *self, int32_t media_type, int32_t direction);
    v3_result (*get_bus_info)(void *self, int32_t media_type, int32_t direction, int32_t index, v3_bus_info *info);
    v3_result (*get_routing_info)(void *self, v3_routing_info *input, v3_routing_info *output);
    v3_result (*activate_bus)(void *self, int32_t media_type, int32_t direction, int32_t index, uint8_t state);
    v3_result (*set_active)(void *self, uint8_t state);
    v3_result (*set_state)(void *self, v3_bstream *stream);
    v3_result (*get_state)(void *self, v3_bstream *stream);
} v3_component_vtbl;

typedef struct v3_audio_processor_vtbl {
    V3_FUNKNOWN_METHODS;
    v3_result (*set_bus_arrangements)(void *self, v3_speaker_arrangement *inputs, int32_t num_inputs,
                                      v3_speaker_arrangement *outputs, int32_t num_outputs);
    v3_result (*get_bus_arrangement)(void *self, int32_t direction, int32_t index, v3_speaker_arrangement *arrangement);
    v3_result (*can_process_sample_size)(void *self, int32_t symbolic_sample_size);
    uint32_t (*get_latency_samples)(void *self);
    v3_result (*setup_processing)(void *self, v3_process_setup *setup);
    v3_result (*set_processing)(void *self, uint8_t state);
    v3_result (*process)(void *self, v3_process_data *data);
    uint32_t (*get_tail_samples)(void *self);
} v3_audio_processor_vtbl;

enum { V3_PARAM_CAN_AUTOMATE = 1 << 0, V3_PARAM_IS_LIST = 1 << 3, V3_PARAM_IS_BYPASS = 1 << 16 };

typedef struct v3_param_info {
    uint32_t id;
    v3_str128 title;
    v3_str128 short_title;
    v3_str128 units;
    int32_t step_count;
    double default_normalized_value;
    int32_t unit_id;
    int32_t flags;
} v3_param_info;

typedef struct v3_edit_controller_vtbl {
    V3_PLUGIN_BASE_METHODS;
    v3_result (*set_component_state)(void *self, v3_bstream *stream);
    v3_result (*set_state)(void *self, v3_bstream *stream);
    v3_result (*get_state)(void *self, v3_bstream *stream);
    int32_t (*get_parameter_count)(void *self);
    v3_result (*get_parameter_info)(void *self, int32_t index, v3_param_info *info);
    v3_result (*get_param_string_by_value)(void *self, uint32_t id, double normalized, v3_str128 string);
    v3_result (*get_param_value_by_string)(void *self, uint32_t id, v3_char16 *string, double *normalized);
    double (*normalized_param_to_plain)(void *self, uint32_t id, double normalized);
    double (*plain_param_to_normalized)(void *self, uint32_t id, double plain);
    double (*get_param_normalized)(void *self, uint32_t id);
    v3_result (*set_param_normalized)(void *self, uint32_t id, double value);
    v3_result (*set_component_handler)(void *self, void *handler);
    void *(*create_view)(void *self, const char *name);
} v3_edit_controller_vtbl;

/* IProcessContextRequirements (mandatory since SDK 3.7): which ProcessContext fields the
 * processor needs, asked once between initialize and setActive. */
enum {
    V3_NEED_PROJECT_TIME_MUSIC = 1 << 2, V3_NEED_BAR_POSITION_MUSIC = 1 << 3, V3_NEED_CYCLE_MUSIC = 1 << 4,
    V3_NEED_TEMPO = 1 << 6, V3_NEED_TIME_SIGNATURE = 1 << 7, V3_NEED_TRANSPORT_STATE = 1 << 10
};

typedef struct v3_process_context_requirements_vtbl {
    V3_FUNKNOWN_METHODS;
    uint32_t (*get_process_context_requirements)(void *self);
} v3_process_context_requirements_vtbl;

/* The module's exports (Linux). */
void *GetPluginFactory(void);
bool ModuleEntry(void *library_handle);
bool ModuleExit(void);

#endif
