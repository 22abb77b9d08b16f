// Per-request client-certificate processing on the main listener (docs/design.md#trust-model).
// The TLS layer already refused certificates that do not chain to tmp-ca.crt (whose key any
// self-authorized caller may fetch), so all trust comes from verifying the attestation inside
// the leaf, bound to the leaf's own public key.
import { createHash } from 'node:crypto'
import type { TLSSocket } from 'node:tls'
import type { VerifiedAttestation } from '../attestation/verify.js'
import type { Attestation } from '../attestation/types.js'
import { KmsError, errorMessage, hasErrorCode } from '../errors.js'
import { attestationFromCertificate } from '../ratls/cert-attestation.js'
import { RATLS_OID } from '../asn1/oids.js'
import { BoundedCache } from '../util/bounded-cache.js'
import { ConcurrencyLimit } from '../util/concurrency.js'
import { parseCertificate, readRaTlsExtension, type ParsedCertificate } from '../x509/parse.js'

export interface ClientCertContext {
  /** the attestation of the leaf, verified and bound to its SPKI; null without one */
  attestation: VerifiedAttestation | null
  /** whether the request carried a certificate that parsed */
  hasCertificate: boolean
  /** SHA-256 (hex) of the presented certificate DER, for the audit log */
  certSha256?: string
}

export const NO_CLIENT_CERT: ClientCertContext = { attestation: null, hasCertificate: false }

/** Distinct certificates a verifier remembers by default: a verified attestation can weigh
 * ~100 KB (the TLS certificate size cap), per worker. */
export const DEFAULT_CLIENT_CERT_CACHE_ENTRIES = 256

/** What the per-request check needs from the verifier (AttestationVerifier satisfies it). */
export interface RaPubkeyVerifier {
  verifyWithRaPubkey(a: Attestation, spkiDer: Uint8Array): Promise<VerifiedAttestation>
}

export interface ClientCertVerifierOptions {
  /** distinct certificates remembered (bounded so a flood of certificates cannot grow memory) */
  maxEntries?: number
  /** how long a verification result is reused; short, so collateral expiry and revocation apply */
  ttlMs?: number
  /** verifications running at once in this worker; the rest wait their turn, so a flood of
   * distinct certificates cannot take every turn of the event loop from cheap RPCs */
  maxConcurrent?: number
  now?: () => number
}

interface PeerLeaf {
  der: Buffer
  /** SHA-256 (hex) of `der`: the cache key and the audit log's certificate hash */
  key: string
}

function peerLeafDer(socket: unknown): Buffer | undefined {
  const tls = socket as Partial<TLSSocket> | null
  if (tls === null || typeof tls.getPeerX509Certificate !== 'function') return undefined
  return tls.getPeerX509Certificate()?.raw
}

function badRequest(prefix: string, err: unknown): KmsError {
  return new KmsError('KMS_ERR_BAD_REQUEST', `${prefix}: ${errorMessage(err)}`, { cause: err })
}

/** Codes of a failure that the same certificate bytes would meet again (a bad signature, a
 * report-data mismatch, an undecodable extension). */
const DETERMINISTIC_CODES = [
  'KMS_ERR_ATTESTATION',
  'KMS_ERR_CERT',
  'KMS_ERR_DER_TRAILING_DATA',
  'KMS_ERR_HEX',
] as const
/** Codes of a failure that may pass on the next try (PCCS unreachable, collateral not yet
 * fetched, a deadline): never cached, so an outage does not lock a guest out. */
const TRANSIENT_CODES = ['KMS_ERR_COLLATERAL', 'KMS_ERR_TIMEOUT', 'KMS_ERR_INTERNAL'] as const

function isDeterministicFailure(err: unknown): boolean {
  // the outer error is our own KMS_ERR_BAD_REQUEST wrapper: decide on what it wraps
  const inner = err instanceof Error ? err.cause : undefined
  if (!(inner instanceof KmsError)) return false
  if (TRANSIENT_CODES.some((c) => hasErrorCode(inner, c))) return false
  return DETERMINISTIC_CODES.some((c) => hasErrorCode(inner, c))
}

/**
 * Verifies the attestation of every presented client certificate. Results are cached by the
 * SHA-256 of the whole certificate DER — the exact bytes that were verified, SPKI and attestation
 * included — for a short time. Deterministic failures are cached the same way, so a client
 * replaying a bad certificate on many connections costs one verification per TTL, not one per
 * request; transient failures are not, so a collateral outage does not lock a guest out.
 */
export class ClientCertVerifier {
  readonly #verifier: RaPubkeyVerifier
  readonly #cache: BoundedCache<Promise<ClientCertContext>>
  readonly #turns: ConcurrencyLimit
  /** The leaf of each connection and its hash, read once: reading it makes an X509Certificate
   * (~200 µs for an RA-TLS certificate carrying a quote), and it cannot change while the
   * connection lives because the listener refuses renegotiation. null = no certificate. */
  readonly #peers = new WeakMap<object, PeerLeaf | null>()

  constructor(verifier: RaPubkeyVerifier, opts: ClientCertVerifierOptions = {}) {
    this.#verifier = verifier
    this.#cache = new BoundedCache(opts.maxEntries ?? DEFAULT_CLIENT_CERT_CACHE_ENTRIES, {
      ttlMs: opts.ttlMs ?? 60_000,
      ...(opts.now === undefined ? {} : { now: opts.now }),
    })
    this.#turns = new ConcurrencyLimit(opts.maxConcurrent ?? 4)
  }

  /** Everything here depends only on the certificate bytes, so the whole outcome (parse,
   * extension checks, verification) is cached by their hash: a guest on a keep-alive
   * connection costs one hash per request, not a certificate parse. */
  async context(socket: unknown): Promise<ClientCertContext> {
    const peer = this.#peer(socket)
    if (peer === null) return NO_CLIENT_CERT
    const { der, key } = peer
    const hit = this.#cache.get(key)
    if (hit !== undefined) return hit
    const result = this.#turns
      .run(() => this.#evaluate(der))
      .then((c) => ({
        ...c,
        certSha256: key,
      }))
    this.#cache.set(key, result)
    result.catch((err: unknown) => {
      if (isDeterministicFailure(err)) return
      if (this.#cache.peek(key) === result) this.#cache.delete(key)
    })
    return result
  }

  #peer(socket: unknown): PeerLeaf | null {
    if (typeof socket !== 'object' || socket === null) return null
    let peer = this.#peers.get(socket)
    if (peer === undefined) {
      const der = peerLeafDer(socket)
      peer = der === undefined ? null : { der, key: createHash('sha256').update(der).digest('hex') }
      this.#peers.set(socket, peer)
    }
    return peer
  }

  async #evaluate(der: Buffer): Promise<ClientCertContext> {
    let cert: ParsedCertificate
    try {
      cert = parseCertificate(der)
    } catch {
      // Upstream's x509 parser failing means "no certificate", not an error.
      return NO_CLIENT_CERT
    }
    try {
      readRaTlsExtension(cert, RATLS_OID.appId)
      readRaTlsExtension(cert, RATLS_OID.appInfo)
    } catch (err) {
      throw badRequest('Failed to parse client certificate', err)
    }
    return { attestation: await this.#verify(cert), hasCertificate: true }
  }

  async #verify(cert: ParsedCertificate): Promise<VerifiedAttestation | null> {
    let attestation: Attestation | null
    try {
      attestation = attestationFromCertificate(cert)
    } catch (err) {
      throw badRequest('invalid quote', err)
    }
    if (attestation === null) return null
    try {
      return await this.#verifier.verifyWithRaPubkey(attestation, cert.spkiDer)
    } catch (err) {
      throw badRequest('invalid quote', err)
    }
  }
}
