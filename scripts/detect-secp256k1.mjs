// Configure-time probe run by binding.gyp: prints 1 when a C compiler can build and link a
// program against libsecp256k1 with its recovery module (Debian's libsecp256k1-dev), else 0.
// A link test rather than a header check, so a header without the library (or a library built
// without the recovery module, or one older than 0.2) counts as absent; the addon is then
// built without the secp256k1 part and `npm ci` still succeeds.
// DSTACK_KMS_SECP256K1=0 or =1 overrides the probe (0: build without it even when present).
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const PROBE = `#include <secp256k1.h>
#include <secp256k1_recovery.h>
int main(void) {
    static const unsigned char key[32] = {1};
    static const unsigned char digest[32] = {2};
    secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    secp256k1_ecdsa_recoverable_signature sig;
    int ok = secp256k1_ecdsa_sign_recoverable(ctx, &sig, digest, key, NULL, NULL);
    secp256k1_context_destroy(ctx);
    return ok == 1 ? 0 : 1;
}
`

function note(text) {
  process.stderr.write(`dstack-kms: ${text}\n`)
}

function probe() {
  const override = process.env.DSTACK_KMS_SECP256K1
  if (override === '0' || override === '1') {
    note(`DSTACK_KMS_SECP256K1=${override}: native secp256k1 ${override === '1' ? 'on' : 'off'}`)
    return override
  }
  if (process.platform !== 'linux') return '0'
  const dir = mkdtempSync(join(tmpdir(), 'dstack-kms-secp256k1-probe-'))
  try {
    const source = join(dir, 'probe.c')
    writeFileSync(source, PROBE)
    // CC may carry a wrapper and flags ("ccache gcc -m64"), as make would read it
    const [cc = 'cc', ...ccArgs] = (process.env.CC || 'cc').trim().split(/\s+/)
    const r = spawnSync(cc, [...ccArgs, source, '-o', join(dir, 'probe'), '-lsecp256k1'], {
      encoding: 'utf8',
    })
    if (r.status === 0) return '1'
    note(
      'libsecp256k1 with the recovery module was not found (install libsecp256k1-dev); ' +
        'building the addon without it, secp256k1 signing will use @noble/curves',
    )
    return '0'
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

process.stdout.write(probe())
