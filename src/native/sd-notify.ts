// sd_notify(3): state changes for systemd's Type=notify services ("READY=1", "STOPPING=1",
// "STATUS=…"), sent as one datagram to the socket named by NOTIFY_SOCKET.
import { KmsError } from '../errors.js'
import { loadNativeBinding } from './binding.js'

/** Sends `state` when NOTIFY_SOCKET is set and returns true; returns false (doing nothing, and
 * never loading the addon) when it is not, i.e. when not started by systemd. Throws the
 * addon's errno error when the send fails. */
export function notify(state: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const socket = env.NOTIFY_SOCKET
  if (socket === undefined || socket === '') return false
  if (!socket.startsWith('/') && !socket.startsWith('@')) {
    // systemd ≥ 254 may also hand out "vsock:CID:PORT"; the unit we ship never asks for it.
    throw new KmsError('KMS_ERR_NATIVE', `unsupported NOTIFY_SOCKET address ${socket}`)
  }
  loadNativeBinding(env).sendUnixDatagram(socket, Buffer.from(state, 'utf8'))
  return true
}
