// One datagram to a unix socket, the transport of sd_notify(3). Node's net module has no
// datagram unix sockets, hence this primitive. Abstract addresses ("@name", which systemd may
// put in NOTIFY_SOCKET) are supported.
#include "addon.h"
#include "errors.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

namespace dstack_kms {

Napi::Value SendUnixDatagram(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 2) {
        throw Napi::TypeError::New(env, "sendUnixDatagram(path, data) takes 2 arguments");
    }
    if (!info[0].IsString()) {
        throw Napi::TypeError::New(env, "path must be a string");
    }
    if (!info[1].IsTypedArray() ||
        info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
        throw Napi::TypeError::New(env, "data must be a Buffer or Uint8Array");
    }
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    const Napi::Uint8Array data = info[1].As<Napi::Uint8Array>();

    if (path.empty() || path.find('\0') != std::string::npos) {
        throw Napi::TypeError::New(env, "path must be non-empty and contain no NUL byte");
    }

    sockaddr_un addr;
    std::memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    socklen_t addrLen;
    if (path[0] == '@') {
        // Abstract namespace: a leading NUL, and the length (not a terminator) ends the name.
        const std::size_t nameLen = path.size() - 1;
        if (nameLen > sizeof(addr.sun_path) - 1) {
            throw Napi::RangeError::New(env, "abstract socket name is too long");
        }
        std::memcpy(addr.sun_path + 1, path.data() + 1, nameLen);
        addrLen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + nameLen);
    } else {
        if (path.size() > sizeof(addr.sun_path) - 1) {
            throw Napi::RangeError::New(env, "socket path is too long");
        }
        std::memcpy(addr.sun_path, path.data(), path.size());
        addrLen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    }

    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw ErrnoError(env, errno, "socket");
    }
    // MSG_DONTWAIT: a full receive queue must fail with EAGAIN, not stall the event loop.
    ssize_t sent;
    do {
        sent = ::sendto(fd, data.Data(), data.ByteLength(), MSG_NOSIGNAL | MSG_DONTWAIT,
                        reinterpret_cast<const sockaddr*>(&addr), addrLen);
    } while (sent < 0 && errno == EINTR);
    const int sendError = errno;
    ::close(fd);
    if (sent < 0) {
        throw ErrnoError(env, sendError, "sendto", &path);
    }
    return env.Undefined();
}

} // namespace dstack_kms
