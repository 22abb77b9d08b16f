// Entry point of the dstack_kms_native addon. The addon holds syscall-shaped primitives only;
// everything protocol-shaped lives in TypeScript (docs/design.md#architecture).
#include "addon.h"

namespace {

// At global scope because NODE_API_MODULE pastes the name into an identifier.
Napi::Object Init(Napi::Env env, Napi::Object exports) {
    exports.Set("flock", Napi::Function::New(env, dstack_kms::Flock, "flock"));
    exports.Set("sendUnixDatagram",
                Napi::Function::New(env, dstack_kms::SendUnixDatagram, "sendUnixDatagram"));
    exports.Set("tdxGetReport0",
                Napi::Function::New(env, dstack_kms::TdxGetReport0, "tdxGetReport0"));
    exports.Set("tdxExtendRtmr",
                Napi::Function::New(env, dstack_kms::TdxExtendRtmr, "tdxExtendRtmr"));
    exports.Set("vsockRoundTrip",
                Napi::Function::New(env, dstack_kms::VsockRoundTrip, "vsockRoundTrip"));
#ifdef DSTACK_KMS_HAVE_SECP256K1
    exports.Set("hasSecp256k1", Napi::Boolean::New(env, true));
    exports.Set("secp256k1PublicKey",
                Napi::Function::New(env, dstack_kms::Secp256k1PublicKey, "secp256k1PublicKey"));
    exports.Set("secp256k1Sign",
                Napi::Function::New(env, dstack_kms::Secp256k1Sign, "secp256k1Sign"));
#else
    exports.Set("hasSecp256k1", Napi::Boolean::New(env, false));
#endif
    return exports;
}

} // namespace

NODE_API_MODULE(dstack_kms_native, Init)
