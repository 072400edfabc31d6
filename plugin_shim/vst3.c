/*
 * vst3.c — the VST3 front-end: one component class ("Audio Module Class", subcategory "Fx")
 * that is also its own edit controller (pedalboard needs a controller or it crashes).
 * Buses: stereo main in, stereo kAux sidechain in, stereo main out. All audio work is the
 * core's; this file only translates the ABI (vst3_abi.h).
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "vst3_abi.h"

#define EXPORT __attribute__((visibility("default")))

static const v3_tuid class_id = V3_ID(0x6C697665, 0x64696666, 0x53686D31, 0x46780001);

typedef struct v3_plugin {
    const v3_component_vtbl *component;         /* also FUnknown and IPluginBase */
    const v3_audio_processor_vtbl *processor;
    const v3_edit_controller_vtbl *controller;
    const v3_process_context_requirements_vtbl *requirements;
    _Atomic uint32_t refs;
    ld_core *core;
    v3_process_setup setup;
    uint32_t channels;                          /* main bus channels, 1 or 2 */
} v3_plugin;

/* [any-thread] */
static v3_plugin *from_component(void *self) { return self; }
/* [any-thread] */
static v3_plugin *from_processor(void *self) { return (v3_plugin *)((char *)self - offsetof(v3_plugin, processor)); }
/* [any-thread] */
static v3_plugin *from_controller(void *self) { return (v3_plugin *)((char *)self - offsetof(v3_plugin, controller)); }
/* [any-thread] */
static v3_plugin *from_requirements(void *self) { return (v3_plugin *)((char *)self - offsetof(v3_plugin, requirements)); }

/* [any-thread] */
static bool same_id(const v3_tuid a, const uint8_t b[16]) { return memcmp(a, b, 16) == 0; }

/* ---------------------------------------------------------------- FUnknown [any-thread] */

/* [any-thread] */
static v3_result plugin_query(v3_plugin *p, const v3_tuid iid, void **obj)
{
    static const uint8_t unknown[16] = V3_FUNKNOWN_IID, base[16] = V3_PLUGIN_BASE_IID,
        component[16] = V3_COMPONENT_IID, processor[16] = V3_AUDIO_PROCESSOR_IID,
        controller[16] = V3_EDIT_CONTROLLER_IID, requirements[16] = V3_PROCESS_CONTEXT_REQUIREMENTS_IID;
    if (same_id(iid, unknown) || same_id(iid, base) || same_id(iid, component))
        *obj = &p->component;
    else if (same_id(iid, processor))
        *obj = &p->processor;
    else if (same_id(iid, controller))
        *obj = &p->controller;
    else if (same_id(iid, requirements))
        *obj = &p->requirements;
    else {
        *obj = NULL;
        return V3_NO_INTERFACE;
    }
    atomic_fetch_add(&p->refs, 1);
    return V3_OK;
}

/* [any-thread] */
static uint32_t plugin_add_ref(v3_plugin *p) { return atomic_fetch_add(&p->refs, 1) + 1; }

/* [any-thread]; the last release destroys the instance */
static uint32_t plugin_release(v3_plugin *p)
{
    uint32_t left = atomic_fetch_sub(&p->refs, 1) - 1;
    if (left == 0) {
        ld_core_destroy(p->core);
        free(p);
    }
    return left;
}

/* Each face's FUnknown methods forward to the one object. [any-thread] */
#define FUNKNOWN_FOR(prefix, from)                                                                   \
    static v3_result prefix##_query(void *self, const v3_tuid iid, void **obj) { return plugin_query(from(self), iid, obj); } \
    static uint32_t prefix##_add_ref(void *self) { return plugin_add_ref(from(self)); }              \
    static uint32_t prefix##_release(void *self) { return plugin_release(from(self)); }
FUNKNOWN_FOR(component, from_component)
FUNKNOWN_FOR(processor, from_processor)
FUNKNOWN_FOR(controller, from_controller)
FUNKNOWN_FOR(requirements, from_requirements)

/* IPluginBase for both faces: nothing to set up beyond create, nothing to tear down before release. [main-thread] */
static v3_result base_initialize(void *self, void *context) { (void)self; (void)context; return V3_OK; }
/* [main-thread] */
static v3_result base_terminate(void *self) { (void)self; return V3_OK; }

/* ---------------------------------------------------------------- state [main-thread] */

/* [main-thread] */
static v3_result write_state(ld_core *core, v3_bstream *stream)
{
    uint8_t bytes[LD_PARAM_STATE_BYTES];
    int32_t size = (int32_t)ld_core_save_state(core, bytes), done = 0;
    while (done < size) {
        int32_t wrote = 0;
        if (stream->vtbl->write(stream, bytes + done, size - done, &wrote) != V3_OK || wrote <= 0)
            return V3_FALSE;
        done += wrote;
    }
    return V3_OK;
}

/* [main-thread] */
static v3_result read_state(ld_core *core, v3_bstream *stream)
{
    uint8_t bytes[LD_PARAM_STATE_BYTES];
    int32_t done = 0;
    while (done < (int32_t)sizeof bytes) {          /* streams may return partial reads */
        int32_t got = 0;
        if (stream->vtbl->read(stream, bytes + done, (int32_t)sizeof bytes - done, &got) != V3_OK || got <= 0)
            break;
        done += got;
    }
    return ld_core_load_state(core, bytes, (size_t)done) ? V3_OK : V3_FALSE;
}

/* ---------------------------------------------------------------- IComponent [main-thread] */

static const struct { int32_t direction, type; const char *name; } buses[] = {
    {V3_INPUT, V3_MAIN, "Input"}, {V3_INPUT, V3_AUX, "Sidechain"}, {V3_OUTPUT, V3_MAIN, "Output"},
};

/* [main-thread] */
static v3_result get_controller_class_id(void *self, v3_tuid cid) { (void)self; memset(cid, 0, 16); return V3_FALSE; }
/* [main-thread] */
static v3_result set_io_mode(void *self, int32_t mode) { (void)self; (void)mode; return V3_OK; }

/* [main-thread] */
static int32_t get_bus_count(void *self, int32_t media_type, int32_t direction)
{
    (void)self;
    return media_type != V3_AUDIO ? 0 : direction == V3_INPUT ? 2 : 1;
}

/* [main-thread] */
static v3_result get_bus_info(void *self, int32_t media_type, int32_t direction, int32_t index, v3_bus_info *info)
{
    v3_plugin *p = from_component(self);
    int32_t found = -1;
    for (int32_t i = 0, n = 0; i < 3; i++)
        if (buses[i].direction == direction && n++ == index)
            found = i;
    if (media_type != V3_AUDIO || found < 0)
        return V3_INVALID_ARGUMENT;
    memset(info, 0, sizeof *info);
    info->media_type = V3_AUDIO;
    info->direction = direction;
    info->channel_count = buses[found].type == V3_AUX ? 2 : (int32_t)p->channels;
    for (size_t i = 0; buses[found].name[i]; i++)
        info->name[i] = (v3_char16)buses[found].name[i];
    info->bus_type = buses[found].type;
    info->flags = buses[found].type == V3_MAIN ? V3_DEFAULT_ACTIVE : 0;
    return V3_OK;
}

/* [main-thread] */
static v3_result get_routing_info(void *self, v3_routing_info *in, v3_routing_info *out)
{
    (void)self; (void)in; (void)out;
    return V3_NOT_IMPLEMENTED;
}

/* [main-thread] */
static v3_result activate_bus(void *self, int32_t media_type, int32_t direction, int32_t index, uint8_t state)
{
    (void)self; (void)direction; (void)index; (void)state;
    return media_type == V3_AUDIO ? V3_OK : V3_INVALID_ARGUMENT;
}

/* [main-thread] */
static v3_result set_active(void *self, uint8_t state)
{
    v3_plugin *p = from_component(self);
    if (!state) {
        ld_core_release(p->core);
        return V3_OK;
    }
    double rate = p->setup.sample_rate > 0 ? p->setup.sample_rate : 44100.0;
    uint32_t block = p->setup.max_samples_per_block > 0 ? (uint32_t)p->setup.max_samples_per_block : 8192;
    uint32_t mode = p->setup.process_mode == V3_OFFLINE ? LD_MODE_OFFLINE : LD_MODE_REALTIME;
    return ld_core_prepare(p->core, rate, block, p->channels, mode) ? V3_OK : V3_FALSE;
}

/* [main-thread] */
static v3_result component_set_state(void *self, v3_bstream *stream) { return read_state(from_component(self)->core, stream); }
/* [main-thread] */
static v3_result component_get_state(void *self, v3_bstream *stream) { return write_state(from_component(self)->core, stream); }

static const v3_component_vtbl component_vtbl = {
    component_query, component_add_ref, component_release, base_initialize, base_terminate,
    get_controller_class_id, set_io_mode, get_bus_count, get_bus_info, get_routing_info, activate_bus,
    set_active, component_set_state, component_get_state,
};

/* ---------------------------------------------------------------- IAudioProcessor */

/* [main-thread] */
static uint32_t channel_count(v3_speaker_arrangement arrangement)
{
    return (uint32_t)__builtin_popcountll(arrangement);
}

/* Main buses: mono or stereo, in = out. The aux bus may be anything, even empty. [main-thread] */
static v3_result set_bus_arrangements(void *self, v3_speaker_arrangement *inputs, int32_t num_inputs,
                                      v3_speaker_arrangement *outputs, int32_t num_outputs)
{
    v3_plugin *p = from_processor(self);
    if (num_inputs < 1 || num_outputs != 1)
        return V3_FALSE;
    uint32_t in = channel_count(inputs[0]), out = channel_count(outputs[0]);
    if (in != out || out < 1 || out > LD_MAX_CHANNELS)
        return V3_FALSE;
    p->channels = out;
    return V3_OK;
}

/* [main-thread] */
static v3_result get_bus_arrangement(void *self, int32_t direction, int32_t index, v3_speaker_arrangement *arrangement)
{
    v3_plugin *p = from_processor(self);
    if (index < 0 || index > (direction == V3_INPUT ? 1 : 0))
        return V3_INVALID_ARGUMENT;
    bool aux = direction == V3_INPUT && index == 1;
    *arrangement = aux || p->channels == 2 ? V3_SPEAKER_STEREO : V3_SPEAKER_MONO;
    return V3_OK;
}

/* [main-thread] */
static v3_result can_process_sample_size(void *self, int32_t size) { (void)self; return size == V3_SAMPLE32 ? V3_OK : V3_FALSE; }
static uint32_t get_latency_samples(void *self) { return ld_core_get_latency(from_processor(self)->core); }   /* [any-thread] */
/* [main-thread] */
static uint32_t get_tail_samples(void *self) { (void)self; return 0; }

/* Refuses rates the engine does not run at here, where hosts (and the SDK validator) expect it. [main-thread] */
static v3_result setup_processing(void *self, v3_process_setup *setup)
{
    if (setup->symbolic_sample_size != V3_SAMPLE32 || !ld_core_rate_supported(setup->sample_rate))
        return V3_FALSE;
    from_processor(self)->setup = *setup;
    return V3_OK;
}

/* [main-thread] or [audio-thread]: VST3 allows either */
static v3_result set_processing(void *self, uint8_t state) { (void)self; (void)state; return V3_OK; }

/* Parameter automation: every point of every queue is read and, sorted by sample offset, handed
 * to the core to apply at its frame. Past LD_MAX_BLOCK_EVENTS points, a queue's middle points are
 * dropped so that every queue keeps its last point at its offset (or, with more queues than that,
 * gets it applied at once: each queue is one parameter, so the order between queues does not
 * matter). [audio-thread] */
static uint32_t collect_parameter_changes(ld_core *core, v3_parameter_changes *changes,
                                          ld_param_event events[LD_MAX_BLOCK_EVENTS])
{
    int32_t queues = changes ? changes->vtbl->get_parameter_count(changes) : 0;
    uint32_t n = 0;
    for (int32_t i = 0; i < queues; i++) {
        v3_param_value_queue *queue = changes->vtbl->get_parameter_data(changes, i);
        const ld_param_info *info = queue ? ld_param_find(queue->vtbl->get_parameter_id(queue)) : NULL;
        int32_t points = info ? queue->vtbl->get_point_count(queue) : 0;
        uint32_t reserve = (uint32_t)(queues - i - 1);      /* room kept for the later queues' last points */
        for (int32_t k = 0; k < points; k++) {
            int32_t offset;
            double value;
            if (queue->vtbl->get_point(queue, k, &offset, &value) != V3_OK)
                continue;
            bool last = k == points - 1;
            if (!last && n + 1 + reserve >= LD_MAX_BLOCK_EVENTS)
                continue;
            double plain = ld_param_from_normalized(info, value);
            if (n == LD_MAX_BLOCK_EVENTS) {
                ld_core_set_param(core, info->id, plain);
                continue;
            }
            uint32_t frame = offset > 0 ? (uint32_t)offset : 0, at = n++;
            for (; at > 0 && events[at - 1].offset > frame; at--)   /* insertion sort, stable */
                events[at] = events[at - 1];
            events[at] = (ld_param_event){frame, info->id, plain};
        }
    }
    return n;
}

/* [audio-thread] */
static void read_transport(const v3_process_context *context, ld_host_transport *t)
{
    uint32_t s = context->state;
    bool loop = (s & V3_CTX_CYCLE_ACTIVE) && (s & V3_CTX_CYCLE_VALID);
    *t = (ld_host_transport){
        .flags = LD_HOST_HAS_SAMPLES | (s & V3_CTX_PLAYING ? LD_HOST_PLAYING : 0u)
               | (s & V3_CTX_TEMPO_VALID ? LD_HOST_HAS_TEMPO : 0u)
               | (s & V3_CTX_PROJECT_TIME_MUSIC_VALID ? LD_HOST_HAS_BEATS : 0u)
               | (s & V3_CTX_TIME_SIG_VALID ? LD_HOST_HAS_TSIG : 0u)
               | (s & V3_CTX_BAR_POSITION_VALID ? LD_HOST_HAS_BAR : 0u) | (loop ? LD_HOST_LOOP_ACTIVE : 0u),
        .tempo = context->tempo,
        .pos_beats = context->project_time_music,
        .pos_samples = context->project_time_samples,
        .bar_start_beats = context->bar_position_music,
        .tsig_num = context->time_sig_numerator,
        .tsig_den = context->time_sig_denominator,
        .loop_start_beats = context->cycle_start_music,
        .loop_end_beats = context->cycle_end_music,
    };
}

static v3_result process(void *self, v3_process_data *data)   /* [audio-thread] */
{
    v3_plugin *p = from_processor(self);
    ld_param_event events[LD_MAX_BLOCK_EVENTS];
    uint32_t event_count = collect_parameter_changes(p->core, data->input_parameter_changes, events);
    if (data->num_samples <= 0 || data->num_outputs < 1 || !data->outputs || data->symbolic_sample_size != V3_SAMPLE32) {
        for (uint32_t i = 0; i < event_count; i++)      /* a parameter flush: values, no audio */
            ld_core_set_param(p->core, events[i].id, events[i].plain);
        return data->symbolic_sample_size != V3_SAMPLE32 && data->num_samples > 0 ? V3_INVALID_ARGUMENT : V3_OK;
    }
    ld_host_transport transport;
    if (data->context)
        read_transport(data->context, &transport);
    const v3_audio_bus_buffers *in = data->num_inputs > 0 && data->inputs ? &data->inputs[0] : NULL;
    const v3_audio_bus_buffers *aux = data->num_inputs > 1 && data->inputs ? &data->inputs[1] : NULL;
    v3_audio_bus_buffers *out = &data->outputs[0];
    ld_audio_block block = {
        .frames = (uint32_t)data->num_samples,
        .mode = data->process_mode == V3_OFFLINE ? LD_MODE_OFFLINE : LD_MODE_REALTIME,
        .transport = data->context ? &transport : NULL,
        .input = in ? (const float *const *)in->channel_buffers32 : NULL,
        .input_channels = in && in->channel_buffers32 && in->num_channels > 0 ? (uint32_t)in->num_channels : 0,
        .sidechain = aux ? (const float *const *)aux->channel_buffers32 : NULL,
        .sidechain_channels = aux && aux->channel_buffers32 && aux->num_channels > 0 ? (uint32_t)aux->num_channels : 0,
        .output = out->channel_buffers32,
        .output_channels = out->channel_buffers32 && out->num_channels > 0 ? (uint32_t)out->num_channels : 0,
        .events = events,
        .event_count = event_count,
    };
    out->silence_flags = ld_core_process(p->core, &block);
    return V3_OK;
}

/* What the clock reads (clock.c): positions, bar line, loop, tempo, meter and play state. [main-thread] */
static uint32_t get_process_context_requirements(void *self)
{
    (void)self;
    return V3_NEED_PROJECT_TIME_MUSIC | V3_NEED_BAR_POSITION_MUSIC | V3_NEED_CYCLE_MUSIC | V3_NEED_TEMPO
         | V3_NEED_TIME_SIGNATURE | V3_NEED_TRANSPORT_STATE;
}

static const v3_process_context_requirements_vtbl requirements_vtbl = {
    requirements_query, requirements_add_ref, requirements_release, get_process_context_requirements,
};

static const v3_audio_processor_vtbl processor_vtbl = {
    processor_query, processor_add_ref, processor_release, set_bus_arrangements, get_bus_arrangement,
    can_process_sample_size, get_latency_samples, setup_processing, set_processing, process, get_tail_samples,
};

/* ---------------------------------------------------------------- IEditController [main-thread] */

/* [main-thread] */
static void to_utf16(const char *text, v3_str128 out)
{
    size_t i = 0;
    for (; text[i] && i < 127; i++)
        out[i] = (v3_char16)(unsigned char)text[i];
    out[i] = 0;
}

/* [main-thread] */
static v3_result controller_set_component_state(void *self, v3_bstream *stream) { return read_state(from_controller(self)->core, stream); }
/* [main-thread] */
static v3_result controller_set_state(void *self, v3_bstream *stream) { (void)self; (void)stream; return V3_OK; }
/* [main-thread] */
static v3_result controller_get_state(void *self, v3_bstream *stream) { (void)self; (void)stream; return V3_OK; }
/* [main-thread] */
static int32_t get_parameter_count(void *self) { (void)self; return LD_PARAM_DEFINED; }

/* [main-thread] */
static v3_result get_parameter_info(void *self, int32_t index, v3_param_info *info)
{
    (void)self;
    if (index < 0 || index >= LD_PARAM_DEFINED)
        return V3_INVALID_ARGUMENT;
    const ld_param_info *p = &ld_param_table[index];
    memset(info, 0, sizeof *info);     /* units stay empty: pedalboard appends them to names */
    info->id = p->id;
    to_utf16(p->name, info->title);
    to_utf16(p->name, info->short_title);
    info->step_count = p->stepped ? (int32_t)(p->max - p->min) : 0;
    info->default_normalized_value = ld_param_to_normalized(p, p->def);
    info->flags = V3_PARAM_CAN_AUTOMATE | (p->labels ? V3_PARAM_IS_LIST : 0) | (p->bypass ? V3_PARAM_IS_BYPASS : 0);
    return V3_OK;
}

/* [main-thread] */
static v3_result get_param_string_by_value(void *self, uint32_t id, double normalized, v3_str128 string)
{
    (void)self;
    const ld_param_info *p = ld_param_find(id);
    if (!p)
        return V3_INVALID_ARGUMENT;
    char text[64];
    ld_param_format(p, ld_param_from_normalized(p, normalized), text, sizeof text);
    to_utf16(text, string);
    return V3_OK;
}

/* [main-thread] */
static v3_result get_param_value_by_string(void *self, uint32_t id, v3_char16 *string, double *normalized)
{
    (void)self;
    const ld_param_info *p = ld_param_find(id);
    char text[64];
    size_t i = 0;
    for (; string && string[i] && i < sizeof text - 1; i++) {
        if (string[i] > 127)
            return V3_FALSE;
        text[i] = (char)string[i];
    }
    text[i] = '\0';
    double plain;
    if (!p || !ld_param_parse(p, text, &plain))
        return V3_FALSE;
    *normalized = ld_param_to_normalized(p, plain);
    return V3_OK;
}

/* [main-thread] */
static double normalized_param_to_plain(void *self, uint32_t id, double normalized)
{
    (void)self;
    const ld_param_info *p = ld_param_find(id);
    return p ? ld_param_from_normalized(p, normalized) : 0.0;
}

/* [main-thread] */
static double plain_param_to_normalized(void *self, uint32_t id, double plain)
{
    (void)self;
    const ld_param_info *p = ld_param_find(id);
    return p ? ld_param_to_normalized(p, plain) : 0.0;
}

/* [main-thread] */
static double get_param_normalized(void *self, uint32_t id)
{
    const ld_param_info *p = ld_param_find(id);
    return p ? ld_param_to_normalized(p, ld_core_get_param(from_controller(self)->core, id)) : 0.0;
}

/* The controller and the processor are one object: the host's edit is the value processed. [main-thread] */
static v3_result set_param_normalized(void *self, uint32_t id, double value)
{
    const ld_param_info *p = ld_param_find(id);
    if (!p)
        return V3_INVALID_ARGUMENT;
    ld_core_set_param(from_controller(self)->core, id, ld_param_from_normalized(p, value));
    return V3_OK;
}

/* [main-thread] */
static v3_result set_component_handler(void *self, void *handler) { (void)self; (void)handler; return V3_OK; }
/* [main-thread] */
static void *create_view(void *self, const char *name) { (void)self; (void)name; return NULL; }

static const v3_edit_controller_vtbl controller_vtbl = {
    controller_query, controller_add_ref, controller_release, base_initialize, base_terminate,
    controller_set_component_state, controller_set_state, controller_get_state, get_parameter_count,
    get_parameter_info, get_param_string_by_value, get_param_value_by_string, normalized_param_to_plain,
    plain_param_to_normalized, get_param_normalized, set_param_normalized, set_component_handler, create_view,
};

/* ---------------------------------------------------------------- IPluginFactory(2) [main-thread] */

/* [main-thread] */
static v3_result factory_query(void *self, const v3_tuid iid, void **obj)
{
    static const uint8_t unknown[16] = V3_FUNKNOWN_IID, factory[16] = V3_PLUGIN_FACTORY_IID,
        factory2[16] = V3_PLUGIN_FACTORY2_IID;
    bool known = same_id(iid, unknown) || same_id(iid, factory) || same_id(iid, factory2);
    *obj = known ? self : NULL;
    return known ? V3_OK : V3_NO_INTERFACE;
}

static uint32_t factory_ref(void *self) { (void)self; return 1; }   /* static object [main-thread] */

/* [main-thread] */
static v3_result get_factory_info(void *self, v3_factory_info *info)
{
    (void)self;
    memset(info, 0, sizeof *info);
    strcpy(info->vendor, "livediff");
    strcpy(info->url, "https://github.com/livediff/livediff");
    info->flags = V3_FACTORY_UNICODE;
    return V3_OK;
}

/* [main-thread] */
static int32_t count_classes(void *self) { (void)self; return 1; }

/* [main-thread] */
static v3_result get_class_info(void *self, int32_t index, v3_class_info *info)
{
    (void)self;
    if (index != 0)
        return V3_INVALID_ARGUMENT;
    memset(info, 0, sizeof *info);
    memcpy(info->cid, class_id, 16);
    info->cardinality = V3_MANY_INSTANCES;
    strcpy(info->category, "Audio Module Class");
    strcpy(info->name, "livediff");
    return V3_OK;
}

/* [main-thread] */
static v3_result get_class_info2(void *self, int32_t index, v3_class_info2 *info)
{
    v3_class_info basic;
    if (get_class_info(self, index, &basic) != V3_OK)
        return V3_INVALID_ARGUMENT;
    memset(info, 0, sizeof *info);
    memcpy(info->cid, basic.cid, 16);
    info->cardinality = basic.cardinality;
    memcpy(info->category, basic.category, sizeof info->category);
    memcpy(info->name, basic.name, sizeof info->name);
    strcpy(info->sub_categories, "Fx");
    strcpy(info->vendor, "livediff");
    strcpy(info->version, "0.1.0");
    strcpy(info->sdk_version, "VST 3.7.0");
    return V3_OK;
}

/* [main-thread] */
static v3_result create_instance(void *self, const v3_tuid cid, const v3_tuid iid, void **obj)
{
    (void)self;
    *obj = NULL;
    if (!same_id(cid, class_id))
        return V3_NO_INTERFACE;
    v3_plugin *p = calloc(1, sizeof *p);
    if (!p || !(p->core = ld_core_create("vst3"))) {
        free(p);
        return V3_FALSE;
    }
    p->component = &component_vtbl;
    p->processor = &processor_vtbl;
    p->controller = &controller_vtbl;
    p->requirements = &requirements_vtbl;
    p->channels = 2;
    atomic_store(&p->refs, 1);
    v3_result result = plugin_query(p, iid, obj);
    plugin_release(p);                  /* the caller holds the reference query took */
    return result;
}

static const v3_factory_vtbl factory_vtbl = {
    factory_query, factory_ref, factory_ref, get_factory_info, count_classes, get_class_info,
    create_instance, get_class_info2,
};
static const struct { const v3_factory_vtbl *vtbl; } factory = {&factory_vtbl};

/* [main-thread] */
EXPORT void *GetPluginFactory(void) { return (void *)&factory; }
/* [main-thread] */
EXPORT bool ModuleEntry(void *library) { (void)library; return true; }
/* [main-thread] */
EXPORT bool ModuleExit(void) { return true; }
