// The functions the addon exports. Each is defined once: by the Linux source that implements it
// (flock.cc, unix_dgram.cc) or, on every other platform, by stub.cc.
#ifndef DSTACK_KMS_NATIVE_ADDON_H
#define DSTACK_KMS_NATIVE_ADDON_H

#include <napi.h>

namespace dstack_kms {

// flock(fd, 'exclusive' | 'shared' | 'unlock', nonBlocking) -> Promise<void>
Napi::Value Flock(const Napi::CallbackInfo& info);

// sendUnixDatagram(path, data) -> undefined; throws on failure
Napi::Value SendUnixDatagram(const Napi::CallbackInfo& info);

} // namespace dstack_kms

#endif // DSTACK_KMS_NATIVE_ADDON_H
