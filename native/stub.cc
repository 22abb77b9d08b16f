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

Napi::Value TdxGetReport0(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(ErrnoError(env, ENOTSUP, "ioctl").Value());
    return deferred.Promise();
}

Napi::Value TdxExtendRtmr(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(ErrnoError(env, ENOTSUP, "ioctl").Value());
    return deferred.Promise();
}

Napi::Value VsockRoundTrip(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(ErrnoError(env, ENOTSUP, "socket").Value());
    return deferred.Promise();
}

} // namespace dstack_kms
