// Entry point of the dstack_kms_native addon. The addon holds syscall-shaped primitives only;
// everything protocol-shaped lives in TypeScript (spec 08 section 2 rule 1).
#include "addon.h"

namespace {

// At global scope because NODE_API_MODULE pastes the name into an identifier.
Napi::Object Init(Napi::Env env, Napi::Object exports) {
    exports.Set("flock", Napi::Function::New(env, dstack_kms::Flock, "flock"));
    exports.Set("sendUnixDatagram",
                Napi::Function::New(env, dstack_kms::SendUnixDatagram, "sendUnixDatagram"));
    return exports;
}

} // namespace

NODE_API_MODULE(dstack_kms_native, Init)
