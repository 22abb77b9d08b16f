// The functions the addon exports. Each is defined once: by the Linux source that implements it
// (flock.cc, unix_dgram.cc, tdx_guest.cc, vsock.cc, secp256k1.cc) or, on every other platform,
// by stub.cc. The secp256k1 functions exist only when the build found libsecp256k1.
#ifndef DSTACK_KMS_NATIVE_ADDON_H
#define DSTACK_KMS_NATIVE_ADDON_H

#include <napi.h>

namespace dstack_kms {

// flock(fd, 'exclusive' | 'shared' | 'unlock', nonBlocking) -> Promise<void>
Napi::Value Flock(const Napi::CallbackInfo& info);

// sendUnixDatagram(path, data) -> undefined; throws on failure
Napi::Value SendUnixDatagram(const Napi::CallbackInfo& info);

#ifdef DSTACK_KMS_HAVE_SECP256K1
// Only when binding.gyp found libsecp256k1 (secp256k1.cc); the addon's `hasSecp256k1` says which.
// secp256k1PublicKey(out33, secret32) -> status (0 ok, 1 secret rejected)
Napi::Value Secp256k1PublicKey(const Napi::CallbackInfo& info);
// secp256k1Sign(out65, digest32, secret32) -> status (0 ok, 1 secret rejected, 2 signing failed)
Napi::Value Secp256k1Sign(const Napi::CallbackInfo& info);
#endif

// tdxGetReport0(devicePath, reportData64) -> Promise<Buffer> (1024-byte TDREPORT)
Napi::Value TdxGetReport0(const Napi::CallbackInfo& info);

// tdxExtendRtmr(devicePath, index, digest48) -> Promise<void> (legacy TDX_CMD_EXTEND_RTMR)
Napi::Value TdxExtendRtmr(const Napi::CallbackInfo& info);

// vsockRoundTrip(cid, port, request, maxResponse, timeoutMs) -> Promise<Buffer> (QGS transport)
Napi::Value VsockRoundTrip(const Napi::CallbackInfo& info);

} // namespace dstack_kms

#endif // DSTACK_KMS_NATIVE_ADDON_H
