/*
 * vst3_host.c — a minimal VST3 host for what pedalboard cannot do: sample-accurate automation
 * (IParameterChanges with several points), silenceFlags, IProcessContextRequirements and a
 * state round trip through IBStream. Built from the shim's own ABI header (plugin_shim/vst3_abi.h).
 *
 *   vst3_host PLUGIN.so automation   one 512-frame block of 0.5 with mix points (0: 0 %, 100: 100 %,
 *                                    300: 0 %), preroll silence, no engine; prints "samples v0 ... v511"
 *   vst3_host PLUGIN.so silence      prints "silence_flags F" for a silent and a non-silent block
 *   vst3_host PLUGIN.so requirements prints "requirements FLAGS"
 *   vst3_host PLUGIN.so state        every parameter to a non-default value, saved, loaded into a new
 *                                    instance; prints "param ID SAVED LOADED" per parameter
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "include/livediff_shm.h"
#include "vst3_abi.h"

typedef struct face { const void *vtbl; } face;

static v3_result no_query(void *self, const v3_tuid iid, void **obj) { (void)self; (void)iid; *obj = NULL; return V3_NO_INTERFACE; }
static uint32_t one_ref(void *self) { (void)self; return 1; }

/* ---------------------------------------------------------------- IParameterChanges */

typedef struct queue { const v3_param_value_queue_vtbl *vtbl; uint32_t id; int32_t count; int32_t offsets[8]; double values[8]; } queue;
static uint32_t queue_id(void *self) { return ((queue *)self)->id; }
static int32_t queue_count(void *self) { return ((queue *)self)->count; }
static v3_result queue_point(void *self, int32_t index, int32_t *offset, double *value)
{
    queue *q = self;
    if (index < 0 || index >= q->count)
        return V3_INVALID_ARGUMENT;
    *offset = q->offsets[index];
    *value = q->values[index];
    return V3_OK;
}
static v3_result queue_add(void *self, int32_t offset, double value, int32_t *index) { (void)self; (void)offset; (void)value; (void)index; return V3_FALSE; }
static const v3_param_value_queue_vtbl queue_vtbl = {no_query, one_ref, one_ref, queue_id, queue_count, queue_point, queue_add};

typedef struct changes { const v3_parameter_changes_vtbl *vtbl; queue *queues; int32_t count; } changes;
static int32_t changes_count(void *self) { return ((changes *)self)->count; }
static v3_param_value_queue *changes_get(void *self, int32_t index)
{
    changes *c = self;
    return index >= 0 && index < c->count ? (v3_param_value_queue *)&c->queues[index] : NULL;
}
static v3_param_value_queue *changes_add(void *self, const uint32_t *id, int32_t *index) { (void)self; (void)id; (void)index; return NULL; }
static const v3_parameter_changes_vtbl changes_vtbl = {no_query, one_ref, one_ref, changes_count, changes_get, changes_add};

/* ---------------------------------------------------------------- IBStream in memory */

typedef struct stream { const v3_bstream_vtbl *vtbl; uint8_t data[4096]; int32_t size, at; } stream;
static v3_result stream_read(void *self, void *buffer, int32_t bytes, int32_t *done)
{
    stream *s = self;
    int32_t n = bytes < s->size - s->at ? bytes : s->size - s->at;
    n = n > 5 ? 5 : n;                  /* partial reads, as hosts may do */
    memcpy(buffer, s->data + s->at, (size_t)n);
    s->at += n;
    *done = n;
    return V3_OK;
}
static v3_result stream_write(void *self, void *buffer, int32_t bytes, int32_t *done)
{
    stream *s = self;
    int32_t n = bytes < (int32_t)sizeof s->data - s->size ? bytes : (int32_t)sizeof s->data - s->size;
    n = n > 7 ? 7 : n;                  /* partial writes */
    memcpy(s->data + s->size, buffer, (size_t)n);
    s->size += n;
    *done = n;
    return V3_OK;
}
static v3_result stream_seek(void *self, int64_t pos, int32_t mode, int64_t *result) { (void)self; (void)pos; (void)mode; (void)result; return V3_FALSE; }
static v3_result stream_tell(void *self, int64_t *pos) { *pos = ((stream *)self)->at; return V3_OK; }
static const v3_bstream_vtbl stream_vtbl = {no_query, one_ref, one_ref, stream_read, stream_write, stream_seek, stream_tell};

/* ---------------------------------------------------------------- the plugin */

typedef struct instance {
    face *component, *processor, *controller;
} instance;

#define CALL(object, type, method, ...) (((const type *)(object)->vtbl)->method((object), __VA_ARGS__))
#define CALL0(object, type, method) (((const type *)(object)->vtbl)->method((object)))

static instance create(const v3_factory_vtbl **factory)
{
    static const v3_tuid component_iid = V3_COMPONENT_IID, processor_iid = V3_AUDIO_PROCESSOR_IID,
                         controller_iid = V3_EDIT_CONTROLLER_IID;
    v3_class_info info;
    (*factory)->get_class_info(factory, 0, &info);
    instance in = {0};
    if ((*factory)->create_instance(factory, info.cid, component_iid, (void **)&in.component) != V3_OK) {
        fprintf(stderr, "create_instance failed\n");
        exit(1);
    }
    CALL(in.component, v3_component_vtbl, initialize, NULL);
    CALL(in.component, v3_component_vtbl, query_interface, processor_iid, (void **)&in.processor);
    CALL(in.component, v3_component_vtbl, query_interface, controller_iid, (void **)&in.controller);
    return in;
}

static void activate(instance *in, int32_t mode)
{
    v3_process_setup setup = {.process_mode = mode, .symbolic_sample_size = V3_SAMPLE32,
                              .max_samples_per_block = 512, .sample_rate = 48000};
    if (CALL(in->processor, v3_audio_processor_vtbl, setup_processing, &setup) != V3_OK
        || CALL(in->component, v3_component_vtbl, set_active, 1) != V3_OK) {
        fprintf(stderr, "setup/activate failed\n");
        exit(1);
    }
    CALL(in->processor, v3_audio_processor_vtbl, set_processing, 1);
}

static void destroy(instance *in)
{
    if (in->processor) {
        CALL(in->processor, v3_audio_processor_vtbl, set_processing, 0);
        CALL(in->component, v3_component_vtbl, set_active, 0);
        CALL0(in->processor, v3_audio_processor_vtbl, release);
    }
    CALL0(in->controller, v3_edit_controller_vtbl, release);
    CALL0(in->component, v3_component_vtbl, terminate);
    CALL0(in->component, v3_component_vtbl, release);
}

/* Normalized value of a plain one for parameter id. */
static double normalized(instance *in, uint32_t id, double plain)
{
    return CALL(in->controller, v3_edit_controller_vtbl, plain_param_to_normalized, id, plain);
}

static uint64_t process(instance *in, float level, float *out_left, changes *automation)
{
    static float in_l[512], in_r[512], out_r[512];
    for (int i = 0; i < 512; i++)
        in_l[i] = in_r[i] = level;
    float *inputs[2] = {in_l, in_r}, *outputs[2] = {out_left, out_r};
    v3_audio_bus_buffers in_bus = {.num_channels = 2, .channel_buffers32 = inputs};
    v3_audio_bus_buffers out_bus = {.num_channels = 2, .channel_buffers32 = outputs};
    v3_process_data data = {.process_mode = V3_REALTIME, .symbolic_sample_size = V3_SAMPLE32, .num_samples = 512,
                            .num_inputs = 1, .num_outputs = 1, .inputs = &in_bus, .outputs = &out_bus,
                            .input_parameter_changes = (v3_parameter_changes *)automation};
    CALL(in->processor, v3_audio_processor_vtbl, process, &data);
    return out_bus.silence_flags;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: vst3_host PLUGIN.so automation|silence|requirements|state\n");
        return 2;
    }
    void *library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    void *(*get_factory)(void) = library ? (void *(*)(void))dlsym(library, "GetPluginFactory") : NULL;
    bool (*entry)(void *) = library ? (bool (*)(void *))dlsym(library, "ModuleEntry") : NULL;
    if (!get_factory || !entry || !entry(library)) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const v3_factory_vtbl **factory = get_factory();
    const char *what = argv[2];
    instance in = create(factory);
    float out[512];
    if (strcmp(what, "requirements") == 0) {
        static const v3_tuid iid = V3_PROCESS_CONTEXT_REQUIREMENTS_IID;
        face *requirements = NULL;
        if (CALL(in.processor, v3_audio_processor_vtbl, query_interface, iid, (void **)&requirements) != V3_OK) {
            printf("requirements none\n");
        } else {
            printf("requirements %u\n", CALL0(requirements, v3_process_context_requirements_vtbl, get_process_context_requirements));
            CALL0(requirements, v3_process_context_requirements_vtbl, release);
        }
    } else if (strcmp(what, "automation") == 0) {
        CALL(in.controller, v3_edit_controller_vtbl, set_param_normalized, LD_PARAM_PREROLL, normalized(&in, LD_PARAM_PREROLL, LD_PREROLL_SILENCE));
        activate(&in, V3_REALTIME);
        queue mix = {&queue_vtbl, LD_PARAM_MIX, 3, {0, 100, 300}, {0.0, 1.0, 0.0}};
        queue seed = {&queue_vtbl, LD_PARAM_SEED, 2, {50, 400}, {normalized(&in, LD_PARAM_SEED, 5), normalized(&in, LD_PARAM_SEED, 9)}};
        queue both[2] = {seed, mix};    /* seed first: the shim must order points across queues */
        changes automation = {&changes_vtbl, both, 2};
        process(&in, 0.5f, out, &automation);
        printf("samples");
        for (int i = 0; i < 512; i++)
            printf(" %g", out[i]);
        printf("\nseed %g\n", CALL(in.controller, v3_edit_controller_vtbl, normalized_param_to_plain, LD_PARAM_SEED,
                                   CALL(in.controller, v3_edit_controller_vtbl, get_param_normalized, LD_PARAM_SEED)));
    } else if (strcmp(what, "silence") == 0) {
        CALL(in.controller, v3_edit_controller_vtbl, set_param_normalized, LD_PARAM_PREROLL, normalized(&in, LD_PARAM_PREROLL, LD_PREROLL_SILENCE));
        activate(&in, V3_REALTIME);
        printf("silence_flags %llu\n", (unsigned long long)process(&in, 0.0f, out, NULL));
        CALL(in.controller, v3_edit_controller_vtbl, set_param_normalized, LD_PARAM_MIX, 0.0);
        printf("silence_flags %llu\n", (unsigned long long)process(&in, 0.5f, out, NULL));
    } else if (strcmp(what, "state") == 0) {
        int32_t count = CALL0(in.controller, v3_edit_controller_vtbl, get_parameter_count);
        for (int32_t i = 0; i < count; i++) {
            v3_param_info info;
            CALL(in.controller, v3_edit_controller_vtbl, get_parameter_info, i, &info);
            double value = CALL(in.controller, v3_edit_controller_vtbl, get_param_normalized, info.id);
            CALL(in.controller, v3_edit_controller_vtbl, set_param_normalized, info.id, value < 0.5 ? 1.0 : 0.0);
        }
        stream saved = {.vtbl = &stream_vtbl};
        CALL(in.component, v3_component_vtbl, get_state, (v3_bstream *)&saved);
        instance other = create(factory);
        CALL(other.component, v3_component_vtbl, set_state, (v3_bstream *)&saved);
        for (int32_t i = 0; i < count; i++) {
            v3_param_info info;
            CALL(in.controller, v3_edit_controller_vtbl, get_parameter_info, i, &info);
            printf("param %u %g %g\n", info.id, CALL(in.controller, v3_edit_controller_vtbl, get_param_normalized, info.id),
                   CALL(other.controller, v3_edit_controller_vtbl, get_param_normalized, info.id));
        }
        other.processor = NULL;         /* never activated */
        destroy(&other);
        in.processor = NULL;
    } else {
        fprintf(stderr, "unknown scenario %s\n", what);
        return 2;
    }
    destroy(&in);
    return 0;
}
