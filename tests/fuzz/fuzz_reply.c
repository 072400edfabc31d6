/*
 * fuzz_reply.c — libFuzzer target: the shim's decoding of one engine reply (io_thread.c's
 * handle_reply: msgpack, WELCOME and ERROR fields, the segment name it then maps), whatever
 * the bytes. Built with ASan + UBSan by tests/fuzz/Makefile; io_thread.c is included so its
 * static functions are reachable. [io-thread] functions, called from the fuzzer's thread.
 */
#include "../../plugin_shim/io_thread.c"

static io_state *fuzz_io(void)
{
    static ld_core *core;
    static io_state io;
    if (!core) {
        core = ld_core_create("harness");
        core->sample_rate = 48000;
        core->channels = 2;
        io.core = core;
    }
    return &io;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    io_state *io = fuzz_io();
    handle_reply(io, data, size, 1.0);
    retire_timeline(io);            /* a WELCOME may have mapped something: start the next input clean */
    io->welcomed = false;
    return 0;
}
