// secp256k1 through the system libsecp256k1
// (docs/design.md#secp256k1-through-libsecp256k1-or-noble-curves): the compressed public key of a
// secret and a recoverable RFC 6979 signature of a 32-byte digest. Compiled only when binding.gyp's
// probe found the library. The TypeScript layer validates every argument (scalar range, digest
// length) and maps the status codes to errors; these functions check only what memory safety needs.
//
// Synchronous on purpose: one call costs tens of microseconds of pure computation, less than a
// hop to the thread pool would, and the Secp256k1Backend interface is synchronous.
//
// Secrets are read in place from the caller's buffer and never copied here; libsecp256k1 clears
// its own intermediate scalars and nonces.
#include "addon.h"

#include <secp256k1.h>
#include <secp256k1_recovery.h>
#include <sys/random.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace dstack_kms {
namespace {

// Status codes shared with src/native/secp256k1.ts.
constexpr int kOk = 0;
constexpr int kSecretRejected = 1;
constexpr int kSignFailed = 2;

// One context for the process, shared by every thread that loads the addon: after creation and
// randomisation it is only read, which libsecp256k1 allows concurrently.
const secp256k1_context* Context() {
    static const secp256k1_context* const ctx = [] {
        secp256k1_context* c = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
        // Blinding against side channels; without a seed the context is still correct.
        unsigned char seed[32];
        std::size_t got = 0;
        while (got < sizeof(seed)) {
            const ssize_t n = getrandom(seed + got, sizeof(seed) - got, 0);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                break;
            }
            got += static_cast<std::size_t>(n);
        }
        if (got == sizeof(seed)) {
            // It fails only on a null context; an unblinded context still signs correctly.
            const int randomized = secp256k1_context_randomize(c, seed);
            static_cast<void>(randomized);
        }
        std::memset(seed, 0, sizeof(seed));
        return c;
    }();
    return ctx;
}

// The bytes of argument `index`, which must be a Uint8Array of exactly `length` bytes.
std::uint8_t* Bytes(const Napi::CallbackInfo& info, std::size_t index, std::size_t length,
                    const char* name) {
    const Napi::Value value = info[index];
    if (!value.IsTypedArray() ||
        value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        value.As<Napi::Uint8Array>().ByteLength() != length) {
        throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a Uint8Array of " +
                                                   std::to_string(length) + " bytes");
    }
    return value.As<Napi::Uint8Array>().Data();
}

} // namespace

Napi::Value Secp256k1PublicKey(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 2) {
        throw Napi::TypeError::New(env, "secp256k1PublicKey(out33, secret32) takes 2 arguments");
    }
    std::uint8_t* out = Bytes(info, 0, 33, "out33");
    const std::uint8_t* secret = Bytes(info, 1, 32, "secret32");

    secp256k1_pubkey pubkey;
    if (secp256k1_ec_pubkey_create(Context(), &pubkey, secret) != 1) {
        return Napi::Number::New(env, kSecretRejected);
    }
    std::size_t length = 33;
    secp256k1_ec_pubkey_serialize(Context(), out, &length, &pubkey, SECP256K1_EC_COMPRESSED);
    return Napi::Number::New(env, kOk);
}

Napi::Value Secp256k1Sign(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 3) {
        throw Napi::TypeError::New(env,
                                   "secp256k1Sign(out65, digest32, secret32) takes 3 arguments");
    }
    std::uint8_t* out = Bytes(info, 0, 65, "out65");
    const std::uint8_t* digest = Bytes(info, 1, 32, "digest32");
    const std::uint8_t* secret = Bytes(info, 2, 32, "secret32");

    if (secp256k1_ec_seckey_verify(Context(), secret) != 1) {
        return Napi::Number::New(env, kSecretRejected);
    }
    // The default nonce function is RFC 6979 with HMAC-SHA256, and libsecp256k1 always produces
    // low-S signatures: the bytes k256 and @noble/curves produce.
    secp256k1_ecdsa_recoverable_signature sig;
    if (secp256k1_ecdsa_sign_recoverable(Context(), &sig, digest, secret, nullptr, nullptr) != 1) {
        return Napi::Number::New(env, kSignFailed);
    }
    int recid = 0;
    secp256k1_ecdsa_recoverable_signature_serialize_compact(Context(), out, &recid, &sig);
    out[64] = static_cast<std::uint8_t>(recid);
    return Napi::Number::New(env, kOk);
}

} // namespace dstack_kms
