// Platforms other than Linux: the addon still builds and loads, and every primitive fails
// with ENOTSUP, so `npm ci` works everywhere and callers get a precise error, not a crash.
#include "addon.h"
#include "errors.h"

#include <cerrno>

namespace dstack_kms {

Napi::Value Flock(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(ErrnoError(env, ENOTSUP, "flock").Value());
    return deferred.Promise();
}

Napi::Value SendUnixDatagram(const Napi::CallbackInfo& info) {
    throw ErrnoError(info.Env(), ENOTSUP, "sendto");
}

} // namespace dstack_kms
