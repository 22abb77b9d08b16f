/* The raw libsecp256k1 figures the native backend is compared with: the same calls the addon
 * makes (pubkey create + compressed serialise; sign_recoverable + compact serialise), in a
 * tight C loop with the same key and digest. Prints one JSON object: microseconds per op. */
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static unsigned char sink;

static void sign_once(const secp256k1_context* ctx, const unsigned char* digest,
                      const unsigned char* key) {
    secp256k1_ecdsa_recoverable_signature sig;
    unsigned char out[65];
    int recid = 0;
    if (!secp256k1_ecdsa_sign_recoverable(ctx, &sig, digest, key, NULL, NULL))
        exit(2);
    secp256k1_ecdsa_recoverable_signature_serialize_compact(ctx, out, &recid, &sig);
    sink ^= out[0] ^ (unsigned char)recid;
}

static void pubkey_once(const secp256k1_context* ctx, const unsigned char* key) {
    secp256k1_pubkey pk;
    unsigned char out[33];
    size_t len = sizeof(out);
    if (!secp256k1_ec_pubkey_create(ctx, &pk, key))
        exit(2);
    secp256k1_ec_pubkey_serialize(ctx, out, &len, &pk, SECP256K1_EC_COMPRESSED);
    sink ^= out[1];
}

/* median of `rounds` rounds of `iters` calls, in microseconds per call */
static double measure(int which, const secp256k1_context* ctx, const unsigned char* digest,
                      const unsigned char* key, long iters, int rounds) {
    double per[32];
    for (int r = 0; r < rounds; r++) {
        double t0 = now_us();
        for (long i = 0; i < iters; i++) {
            if (which == 0)
                sign_once(ctx, digest, key);
            else
                pubkey_once(ctx, key);
        }
        per[r] = (now_us() - t0) / (double)iters;
    }
    for (int i = 1; i < rounds; i++) {
        for (int j = i; j > 0 && per[j - 1] > per[j]; j--) {
            double t = per[j];
            per[j] = per[j - 1];
            per[j - 1] = t;
        }
    }
    return per[rounds / 2];
}

int main(int argc, char** argv) {
    long iters = argc > 1 ? atol(argv[1]) : 5000;
    int rounds = argc > 2 ? atoi(argv[2]) : 7;
    if (iters < 1 || rounds < 1 || rounds > 32)
        return 1;
    unsigned char key[32], digest[32], seed[32];
    memset(key, 0x33, sizeof(key));
    memset(digest, 0x5a, sizeof(digest));
    memset(seed, 0x42, sizeof(seed));
    secp256k1_context* ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    if (!secp256k1_context_randomize(ctx, seed))
        return 1;
    /* warm-up */
    measure(0, ctx, digest, key, iters / 4 + 1, 1);
    double sign = measure(0, ctx, digest, key, iters, rounds);
    double pub = measure(1, ctx, digest, key, iters, rounds);
    printf("{\"signUs\":%.4f,\"pubkeyUs\":%.4f,\"sink\":%u}\n", sign, pub, (unsigned)sink);
    secp256k1_context_destroy(ctx);
    return 0;
}
