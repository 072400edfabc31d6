/*
 * clap.c — the CLAP front-end: one plugin ("org.livediff.shim") with audio ports (main in,
 * sidechain in without the MAIN flag, main out), params, latency, render and state.
 * All audio work is the core's; this file only translates the ABI (clap_abi.h).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clap_abi.h"
#include "core.h"

#define EXPORT __attribute__((visibility("default")))

/* Not CLAP: counters of one instance for test harnesses (tests/host/clap_host.py). [any-thread] */
EXPORT void livediff_clap_stats(const clap_plugin *plugin, ld_core_stats *out);

typedef struct clap_shim {
    clap_plugin plugin;
    const clap_host *host;
    ld_core *core;
    _Atomic int32_t render_mode;        /* CLAP_RENDER_*; read by the audio thread per block */
    double sample_rate;
} clap_shim;

/* [any-thread] */
static clap_shim *shim_of(const clap_plugin *plugin) { return plugin->plugin_data; }

static const char *const features[] = {"audio-effect", "stereo", NULL};
static const clap_plugin_descriptor descriptor = {
    .clap_version = CLAP_VERSION_INIT, .id = "org.livediff.shim", .name = "livediff", .vendor = "livediff",
    .url = "", .manual_url = "", .support_url = "", .version = "0.1.0",
    .description = "Generates bar-aligned continuations of the track with the livediff engine",
    .features = features,
};

/* ---------------------------------------------------------------- lifecycle */

static bool shim_init(const clap_plugin *plugin) { (void)plugin; return true; }   /* [main-thread] */

static void shim_destroy(const clap_plugin *plugin)   /* [main-thread] */
{
    clap_shim *shim = shim_of(plugin);
    ld_core_destroy(shim->core);
    free(shim);
}

static bool shim_activate(const clap_plugin *plugin, double sample_rate, uint32_t min_frames, uint32_t max_frames)
{   /* [main-thread] */
    (void)min_frames;
    clap_shim *shim = shim_of(plugin);
    shim->sample_rate = sample_rate;
    uint32_t mode = atomic_load(&shim->render_mode) == CLAP_RENDER_OFFLINE ? LD_MODE_OFFLINE : LD_MODE_REALTIME;
    return ld_core_prepare(shim->core, sample_rate, max_frames, 2, mode);
}

static void shim_deactivate(const clap_plugin *plugin) { ld_core_release(shim_of(plugin)->core); }   /* [main-thread] */
static bool shim_start_processing(const clap_plugin *plugin) { (void)plugin; return true; }   /* [audio-thread] */
static void shim_stop_processing(const clap_plugin *plugin) { (void)plugin; }                 /* [audio-thread] */
static void shim_reset(const clap_plugin *plugin) { ld_core_reset(shim_of(plugin)->core); }  /* [audio-thread] */
static void shim_on_main_thread(const clap_plugin *plugin) { (void)plugin; }                  /* [main-thread] */

/* ---------------------------------------------------------------- process [audio-thread] */

/* The block's parameter events, in time order, for the core to apply at their frames; past
 * LD_MAX_BLOCK_EVENTS the last entry takes each later event (the final values stay right). [audio-thread] */
static uint32_t collect_param_events(const clap_input_events *events, ld_param_event out[LD_MAX_BLOCK_EVENTS])
{
    uint32_t count = events ? events->size(events) : 0, n = 0;
    for (uint32_t i = 0; i < count; i++) {
        const clap_event_header *header = events->get(events, i);
        if (header->space_id != CLAP_CORE_EVENT_SPACE_ID || header->type != CLAP_EVENT_PARAM_VALUE)
            continue;
        const clap_event_param_value *event = (const clap_event_param_value *)header;
        if (n == LD_MAX_BLOCK_EVENTS)
            n--;
        out[n++] = (ld_param_event){header->time, event->param_id, event->value};
    }
    return n;
}

/* [audio-thread], or [main-thread] through params_flush while inactive */
static void apply_param_events(ld_core *core, const clap_input_events *events)
{
    uint32_t count = events ? events->size(events) : 0;
    for (uint32_t i = 0; i < count; i++) {
        const clap_event_header *header = events->get(events, i);
        if (header->space_id != CLAP_CORE_EVENT_SPACE_ID || header->type != CLAP_EVENT_PARAM_VALUE)
            continue;
        const clap_event_param_value *event = (const clap_event_param_value *)header;
        ld_core_set_param(core, event->param_id, event->value);
    }
}

/* [audio-thread] */
static void read_transport(const clap_event_transport *t, double sample_rate, ld_host_transport *out)
{
    uint32_t f = t->flags;
    bool beats = f & CLAP_TRANSPORT_HAS_BEATS_TIMELINE;
    *out = (ld_host_transport){
        .flags = (f & CLAP_TRANSPORT_IS_PLAYING ? LD_HOST_PLAYING : 0u) | (f & CLAP_TRANSPORT_HAS_TEMPO ? LD_HOST_HAS_TEMPO : 0u)
               | (beats ? LD_HOST_HAS_BEATS | LD_HOST_HAS_BAR : 0u)
               | (f & CLAP_TRANSPORT_HAS_SECONDS_TIMELINE ? LD_HOST_HAS_SAMPLES : 0u)
               | (f & CLAP_TRANSPORT_HAS_TIME_SIGNATURE ? LD_HOST_HAS_TSIG : 0u)
               | (beats && (f & CLAP_TRANSPORT_IS_LOOP_ACTIVE) ? LD_HOST_LOOP_ACTIVE : 0u),
        .tempo = t->tempo,
        .pos_beats = (double)t->song_pos_beats / CLAP_BEATTIME_FACTOR,
        .pos_samples = llround((double)t->song_pos_seconds / CLAP_SECTIME_FACTOR * sample_rate),
        .bar_start_beats = (double)t->bar_start / CLAP_BEATTIME_FACTOR,
        .tsig_num = t->tsig_num,
        .tsig_den = t->tsig_denom,
        .loop_start_beats = (double)t->loop_start_beats / CLAP_BEATTIME_FACTOR,
        .loop_end_beats = (double)t->loop_end_beats / CLAP_BEATTIME_FACTOR,
    };
}

/* [audio-thread] */
static uint32_t usable_channels(const clap_audio_buffer *buffer)
{
    return buffer && buffer->data32 ? buffer->channel_count : 0;
}

/* [audio-thread] */
static int32_t shim_process(const clap_plugin *plugin, const clap_process *process)
{
    clap_shim *shim = shim_of(plugin);
    if (process->audio_outputs_count < 1 || !process->audio_outputs) {
        apply_param_events(shim->core, process->in_events);
        return CLAP_PROCESS_CONTINUE;
    }
    ld_param_event events[LD_MAX_BLOCK_EVENTS];
    ld_host_transport transport;
    if (process->transport)
        read_transport(process->transport, shim->sample_rate, &transport);
    const clap_audio_buffer *in = process->audio_inputs_count > 0 ? &process->audio_inputs[0] : NULL;
    const clap_audio_buffer *side = process->audio_inputs_count > 1 ? &process->audio_inputs[1] : NULL;
    clap_audio_buffer *out = &process->audio_outputs[0];
    ld_audio_block block = {
        .frames = process->frames_count,
        .mode = atomic_load_explicit(&shim->render_mode, memory_order_relaxed) == CLAP_RENDER_OFFLINE
              ? LD_MODE_OFFLINE : LD_MODE_REALTIME,
        .transport = process->transport ? &transport : NULL,
        .input = in ? (const float *const *)in->data32 : NULL,
        .input_channels = usable_channels(in),
        .sidechain = side ? (const float *const *)side->data32 : NULL,
        .sidechain_channels = usable_channels(side),
        .output = out->data32,
        .output_channels = usable_channels(out),
        .events = events,
        .event_count = collect_param_events(process->in_events, events),
    };
    out->constant_mask = ld_core_process(shim->core, &block);    /* all-zero channels are constant */
    return CLAP_PROCESS_CONTINUE;
}

/* ---------------------------------------------------------------- audio ports [main-thread] */

/* [main-thread] */
static uint32_t ports_count(const clap_plugin *plugin, bool is_input) { (void)plugin; return is_input ? 2 : 1; }

/* [main-thread] */
static bool ports_get(const clap_plugin *plugin, uint32_t index, bool is_input, clap_audio_port_info *info)
{
    (void)plugin;
    if (index >= ports_count(plugin, is_input))
        return false;
    bool sidechain = is_input && index == 1;
    memset(info, 0, sizeof *info);
    info->id = index;
    snprintf(info->name, sizeof info->name, "%s", sidechain ? "Sidechain" : is_input ? "Input" : "Output");
    info->flags = sidechain ? 0 : CLAP_AUDIO_PORT_IS_MAIN;
    info->channel_count = 2;
    info->port_type = CLAP_PORT_STEREO;
    info->in_place_pair = CLAP_INVALID_ID;
    return true;
}

static const clap_plugin_audio_ports audio_ports = {ports_count, ports_get};

/* ---------------------------------------------------------------- params */

static uint32_t params_count(const clap_plugin *plugin) { (void)plugin; return LD_PARAM_DEFINED; }   /* [main-thread] */

static bool params_get_info(const clap_plugin *plugin, uint32_t index, clap_param_info *info)   /* [main-thread] */
{
    (void)plugin;
    if (index >= LD_PARAM_DEFINED)
        return false;
    const ld_param_info *p = &ld_param_table[index];
    memset(info, 0, sizeof *info);
    info->id = p->id;
    info->flags = CLAP_PARAM_IS_AUTOMATABLE | (p->stepped ? CLAP_PARAM_IS_STEPPED : 0u) | (p->labels ? CLAP_PARAM_IS_ENUM : 0u)
                | (p->bypass ? CLAP_PARAM_IS_BYPASS : 0u);
    snprintf(info->name, sizeof info->name, "%s", p->name);
    info->min_value = p->min;
    info->max_value = p->max;
    info->default_value = p->def;
    return true;
}

static bool params_get_value(const clap_plugin *plugin, clap_id id, double *value)   /* [main-thread] */
{
    if (!ld_param_find(id))
        return false;
    *value = ld_core_get_param(shim_of(plugin)->core, id);
    return true;
}

static bool params_value_to_text(const clap_plugin *plugin, clap_id id, double value, char *text, uint32_t size)
{   /* [main-thread] */
    (void)plugin;
    const ld_param_info *p = ld_param_find(id);
    if (!p || size == 0)
        return false;
    ld_param_format(p, value, text, size);
    return true;
}

static bool params_text_to_value(const clap_plugin *plugin, clap_id id, const char *text, double *value)
{   /* [main-thread] */
    (void)plugin;
    const ld_param_info *p = ld_param_find(id);
    return p && ld_param_parse(p, text, value);
}

/* [audio-thread] when processing, else [main-thread] */
static void params_flush(const clap_plugin *plugin, const clap_input_events *in, const clap_output_events *out)
{
    (void)out;
    apply_param_events(shim_of(plugin)->core, in);
}

static const clap_plugin_params params = {params_count, params_get_info, params_get_value, params_value_to_text,
                                          params_text_to_value, params_flush};

/* ---------------------------------------------------------------- latency, render, state */

static uint32_t latency_get(const clap_plugin *plugin) { return ld_core_get_latency(shim_of(plugin)->core); }   /* [main-thread] */
static const clap_plugin_latency latency = {latency_get};

static bool render_hard_realtime(const clap_plugin *plugin) { (void)plugin; return false; }   /* [main-thread] */

static bool render_set(const clap_plugin *plugin, int32_t mode)   /* [main-thread] */
{
    if (mode != CLAP_RENDER_REALTIME && mode != CLAP_RENDER_OFFLINE)
        return false;
    atomic_store(&shim_of(plugin)->render_mode, mode);
    return true;
}

static const clap_plugin_render render = {render_hard_realtime, render_set};

static bool state_save(const clap_plugin *plugin, const clap_ostream *stream)   /* [main-thread] */
{
    uint8_t bytes[LD_PARAM_STATE_BYTES];
    size_t size = ld_core_save_state(shim_of(plugin)->core, bytes), done = 0;
    while (done < size) {                   /* streams may take part of a write */
        int64_t wrote = stream->write(stream, bytes + done, size - done);
        if (wrote <= 0)
            return false;
        done += (size_t)wrote;
    }
    return true;
}

static bool state_load(const clap_plugin *plugin, const clap_istream *stream)   /* [main-thread] */
{
    uint8_t bytes[LD_PARAM_STATE_BYTES];
    size_t done = 0;
    while (done < sizeof bytes) {
        int64_t got = stream->read(stream, bytes + done, sizeof bytes - done);
        if (got <= 0)
            break;
        done += (size_t)got;
    }
    return ld_core_load_state(shim_of(plugin)->core, bytes, done);
}

static const clap_plugin_state state = {state_save, state_load};

static const void *shim_get_extension(const clap_plugin *plugin, const char *id)   /* [any-thread] */
{
    (void)plugin;
    if (strcmp(id, CLAP_EXT_AUDIO_PORTS) == 0) return &audio_ports;
    if (strcmp(id, CLAP_EXT_PARAMS) == 0) return &params;
    if (strcmp(id, CLAP_EXT_LATENCY) == 0) return &latency;
    if (strcmp(id, CLAP_EXT_RENDER) == 0) return &render;
    if (strcmp(id, CLAP_EXT_STATE) == 0) return &state;
    return NULL;
}

/* ---------------------------------------------------------------- factory and entry (CLAP: all thread-safe) */

/* [any-thread] */
static uint32_t factory_count(const clap_plugin_factory *factory) { (void)factory; return 1; }

/* [any-thread] */
static const clap_plugin_descriptor *factory_descriptor(const clap_plugin_factory *factory, uint32_t index)
{
    (void)factory;
    return index == 0 ? &descriptor : NULL;
}

/* [any-thread] */
static const clap_plugin *factory_create(const clap_plugin_factory *factory, const clap_host *host, const char *id)
{
    (void)factory;
    if (!id || strcmp(id, descriptor.id) != 0)
        return NULL;
    clap_shim *shim = calloc(1, sizeof *shim);
    if (!shim || !(shim->core = ld_core_create("clap"))) {
        free(shim);
        return NULL;
    }
    shim->host = host;
    shim->plugin = (clap_plugin){
        .desc = &descriptor, .plugin_data = shim, .init = shim_init, .destroy = shim_destroy,
        .activate = shim_activate, .deactivate = shim_deactivate, .start_processing = shim_start_processing,
        .stop_processing = shim_stop_processing, .reset = shim_reset, .process = shim_process,
        .get_extension = shim_get_extension, .on_main_thread = shim_on_main_thread,
    };
    return &shim->plugin;
}

static const clap_plugin_factory factory = {factory_count, factory_descriptor, factory_create};

/* [any-thread] */
static bool entry_init(const char *path) { (void)path; return true; }
/* [any-thread] */
static void entry_deinit(void) {}

/* [any-thread] */
static const void *entry_get_factory(const char *id)
{
    return strcmp(id, CLAP_FACTORY_ID) == 0 ? &factory : NULL;
}

EXPORT const clap_plugin_entry clap_entry = {CLAP_VERSION_INIT, entry_init, entry_deinit, entry_get_factory};

void livediff_clap_stats(const clap_plugin *plugin, ld_core_stats *out)
{
    ld_core_get_stats(shim_of(plugin)->core, out);
}
