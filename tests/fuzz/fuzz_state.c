/*
 * fuzz_state.c — libFuzzer target: loading a saved plugin state (params.c ld_params_load),
 * then what a host does with the values: format them, normalize them, parse text back. Also
 * parses the input as parameter text. Every loaded value must come out within its range.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin_shim/params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    double values[LD_PARAM_COUNT] = {0};   /* indexed by id; the table lists the ids in use */
    for (uint32_t i = 0; i < LD_PARAM_DEFINED; i++)
        values[ld_param_table[i].id] = ld_param_table[i].def;
    char text[64];
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    bool loaded = ld_params_load(data, size, values);
    for (uint32_t i = 0; i < LD_PARAM_DEFINED; i++) {
        const ld_param_info *p = &ld_param_table[i];
        uint32_t id = p->id;
        if (loaded && !(values[id] >= p->min && values[id] <= p->max))
            abort();                /* a loaded value outside its range reaches the engine refused */
        char shown[64];
        ld_param_format(p, values[id], shown, sizeof shown);
        double norm = ld_param_to_normalized(p, values[id]);
        if (!(norm >= 0.0 && norm <= 1.0))
            abort();
        double parsed;
        if (ld_param_parse(p, shown, &parsed) && !(parsed >= p->min && parsed <= p->max))
            abort();
        if (ld_param_parse(p, text, &parsed) && !(parsed >= p->min && parsed <= p->max))
            abort();
        ld_param_from_normalized(p, norm);
    }
    return 0;
}
