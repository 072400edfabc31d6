/*
 * vst3_host.c — a minimal scripted VST3 host for tests, in C on the shim's own ABI declarations
 * (plugin_shim/vst3_abi.h), driven from Python through cffi (tests/host/vst3_host.py). It loads
 * a bundle's .so, creates the first class, and calls process() with whatever ProcessContext the
 * test scripts: quantized musical positions, blocks across bar lines, tempo steps, per-call
 * offline mode, as DAWs do it (../shared/BRIEF.md §1b, §1c).
 *
 * Everything here runs on the calling (test) thread, which plays main thread and audio thread.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin_shim/vst3_abi.h"

/* The ProcessContext fields a test sets for one block. */
typedef struct vh_context {
    uint32_t state;             /* V3 ProcessContext state flags */
    int64_t project_time_samples;
    double project_time_music;
    double bar_position_music;
    double cycle_start_music, cycle_end_music;
    double tempo;
    int32_t tsig_num, tsig_den;
} vh_context;

typedef struct vh_host {
    void *library;
    void **component;           /* interface pointers: an object whose first field is its vtable */
    void **processor;
    void **controller;
    double sample_rate;
    int32_t max_block, mode;
} vh_host;

#define CALL(object, vtbl_type, method, ...) (((const vtbl_type *)*(object))->method((object), __VA_ARGS__))
#define CALL0(object, vtbl_type, method) (((const vtbl_type *)*(object))->method((object)))

static const v3_tuid component_iid = V3_COMPONENT_IID, processor_iid = V3_AUDIO_PROCESSOR_IID,
                     controller_iid = V3_EDIT_CONTROLLER_IID;

void vh_close(vh_host *host);

/* Load, create, initialise, set up (mode: V3_REALTIME or V3_OFFLINE), activate. NULL on failure. */
vh_host *vh_open(const char *path, double sample_rate, int32_t max_block, int32_t mode)
{
    vh_host *host = calloc(1, sizeof *host);
    if (!host || !(host->library = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
        free(host);
        return NULL;
    }
    bool (*entry)(void *) = (bool (*)(void *))dlsym(host->library, "ModuleEntry");
    void *(*get_factory)(void) = (void *(*)(void))dlsym(host->library, "GetPluginFactory");
    void **factory = get_factory && (!entry || entry(host->library)) ? get_factory() : NULL;
    v3_class_info info;
    if (!factory || CALL(factory, v3_factory_vtbl, get_class_info, 0, &info) != V3_OK
        || CALL(factory, v3_factory_vtbl, create_instance, info.cid, component_iid, (void **)&host->component) != V3_OK
        || CALL(host->component, v3_component_vtbl, initialize, NULL) != V3_OK
        || CALL(host->component, v3_component_vtbl, query_interface, processor_iid, (void **)&host->processor) != V3_OK
        || CALL(host->component, v3_component_vtbl, query_interface, controller_iid, (void **)&host->controller) != V3_OK) {
        vh_close(host);
        return NULL;
    }
    host->sample_rate = sample_rate;
    host->max_block = max_block;
    host->mode = mode;
    v3_process_setup setup = {.process_mode = mode, .symbolic_sample_size = V3_SAMPLE32,
                              .max_samples_per_block = max_block, .sample_rate = sample_rate};
    if (CALL(host->processor, v3_audio_processor_vtbl, setup_processing, &setup) != V3_OK
        || CALL(host->component, v3_component_vtbl, set_active, 1) != V3_OK
        || CALL(host->processor, v3_audio_processor_vtbl, set_processing, 1) != V3_OK) {
        vh_close(host);
        return NULL;
    }
    return host;
}

/* A plain parameter value, through the controller (as a host's generic editor does). */
int vh_set_param(vh_host *host, uint32_t id, double plain)
{
    double normalized = CALL(host->controller, v3_edit_controller_vtbl, plain_param_to_normalized, id, plain);
    return CALL(host->controller, v3_edit_controller_vtbl, set_param_normalized, id, normalized) == V3_OK;
}

/* One block: planar stereo in and out (frames each per channel), the context (NULL: none),
 * mode: this call's ProcessData.processMode. Returns the process() result. */
int vh_process(vh_host *host, const float *input, float *output, int32_t frames, const vh_context *context,
               int32_t mode)
{
    float *in[2] = {(float *)input, (float *)input + frames}, *out[2] = {output, output + frames};
    v3_audio_bus_buffers inputs = {.num_channels = 2, .channel_buffers32 = in};
    v3_audio_bus_buffers outputs = {.num_channels = 2, .channel_buffers32 = out};
    v3_process_context ctx;
    if (context)
        ctx = (v3_process_context){
            .state = context->state, .sample_rate = host->sample_rate,
            .project_time_samples = context->project_time_samples,
            .project_time_music = context->project_time_music, .bar_position_music = context->bar_position_music,
            .cycle_start_music = context->cycle_start_music, .cycle_end_music = context->cycle_end_music,
            .tempo = context->tempo, .time_sig_numerator = context->tsig_num,
            .time_sig_denominator = context->tsig_den,
        };
    v3_process_data data = {
        .process_mode = mode, .symbolic_sample_size = V3_SAMPLE32, .num_samples = frames,
        .num_inputs = 1, .num_outputs = 1, .inputs = &inputs, .outputs = &outputs,
        .context = context ? &ctx : NULL,
    };
    return CALL(host->processor, v3_audio_processor_vtbl, process, &data);
}

void vh_close(vh_host *host)
{
    if (!host)
        return;
    if (host->processor) {
        CALL(host->processor, v3_audio_processor_vtbl, set_processing, 0);
        CALL(host->component, v3_component_vtbl, set_active, 0);
        CALL0(host->processor, v3_audio_processor_vtbl, release);
    }
    if (host->controller)
        CALL0(host->controller, v3_edit_controller_vtbl, release);
    if (host->component) {
        CALL0(host->component, v3_component_vtbl, terminate);
        CALL0(host->component, v3_component_vtbl, release);
    }
    if (host->library)
        dlclose(host->library);
    free(host);
}
