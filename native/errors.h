// Native failures cross into JavaScript in Node's own `fs` shape: an Error with `code`
// ('ENOENT'), `errno` (negative, as Node reports it), `syscall` and, where a path is involved,
// `path`. The TypeScript layer then maps them to domain errors.
//
// Names and texts come from a switch table rather than strerrorname_np(): that needs glibc 2.32
// and does not exist on musl. The texts are libuv's, so messages read like Node's own errors.
#ifndef DSTACK_KMS_NATIVE_ERRORS_H
#define DSTACK_KMS_NATIVE_ERRORS_H

#include <napi.h>

#include <cerrno>
#include <string>

namespace dstack_kms {

struct ErrnoName {
    const char* code;
    const char* text;
};

inline ErrnoName DescribeErrno(int err) {
    switch (err) {
    case EPERM:
        return {"EPERM", "operation not permitted"};
    case ENOENT:
        return {"ENOENT", "no such file or directory"};
    case ESRCH:
        return {"ESRCH", "no such process"};
    case EINTR:
        return {"EINTR", "interrupted system call"};
    case EIO:
        return {"EIO", "i/o error"};
    case ENXIO:
        return {"ENXIO", "no such device or address"};
    case E2BIG:
        return {"E2BIG", "argument list too long"};
    case EBADF:
        return {"EBADF", "bad file descriptor"};
    // EWOULDBLOCK is EAGAIN on every platform we build for; Node calls it EAGAIN too.
    case EAGAIN:
        return {"EAGAIN", "resource temporarily unavailable"};
    case ENOMEM:
        return {"ENOMEM", "not enough memory"};
    case EACCES:
        return {"EACCES", "permission denied"};
    case EFAULT:
        return {"EFAULT", "bad address in system call argument"};
    case EBUSY:
        return {"EBUSY", "resource busy or locked"};
    case EEXIST:
        return {"EEXIST", "file already exists"};
    case EXDEV:
        return {"EXDEV", "cross-device link not permitted"};
    case ENODEV:
        return {"ENODEV", "no such device"};
    case ENOTDIR:
        return {"ENOTDIR", "not a directory"};
    case EISDIR:
        return {"EISDIR", "illegal operation on a directory"};
    case EINVAL:
        return {"EINVAL", "invalid argument"};
    case ENFILE:
        return {"ENFILE", "file table overflow"};
    case EMFILE:
        return {"EMFILE", "too many open files"};
    case ENOTTY:
        return {"ENOTTY", "inappropriate ioctl for device"};
    case ETXTBSY:
        return {"ETXTBSY", "text file is busy"};
    case EFBIG:
        return {"EFBIG", "file too large"};
    case ENOSPC:
        return {"ENOSPC", "no space left on device"};
    case ESPIPE:
        return {"ESPIPE", "invalid seek"};
    case EROFS:
        return {"EROFS", "read-only file system"};
    case EMLINK:
        return {"EMLINK", "too many links"};
    case EPIPE:
        return {"EPIPE", "broken pipe"};
    case ERANGE:
        return {"ERANGE", "result too large"};
    case ENAMETOOLONG:
        return {"ENAMETOOLONG", "name too long"};
    case ENOLCK:
        return {"ENOLCK", "no locks available"};
    case ENOSYS:
        return {"ENOSYS", "function not implemented"};
    case ENOTEMPTY:
        return {"ENOTEMPTY", "directory not empty"};
    case ELOOP:
        return {"ELOOP", "too many symbolic links encountered"};
    case ENOTSOCK:
        return {"ENOTSOCK", "socket operation on non-socket"};
    case EDESTADDRREQ:
        return {"EDESTADDRREQ", "destination address required"};
    case EMSGSIZE:
        return {"EMSGSIZE", "message too long"};
    case EPROTOTYPE:
        return {"EPROTOTYPE", "protocol wrong type for socket"};
    case EPROTONOSUPPORT:
        return {"EPROTONOSUPPORT", "protocol not supported"};
    case ENOTSUP:
        return {"ENOTSUP", "operation not supported on socket"};
#if defined(EOPNOTSUPP) && EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
        return {"ENOTSUP", "operation not supported on socket"};
#endif
    case EAFNOSUPPORT:
        return {"EAFNOSUPPORT", "address family not supported"};
    case EADDRINUSE:
        return {"EADDRINUSE", "address already in use"};
    case EADDRNOTAVAIL:
        return {"EADDRNOTAVAIL", "address not available"};
    case ENETDOWN:
        return {"ENETDOWN", "network is down"};
    case ENETUNREACH:
        return {"ENETUNREACH", "network is unreachable"};
    case ECONNABORTED:
        return {"ECONNABORTED", "software caused connection abort"};
    case ECONNRESET:
        return {"ECONNRESET", "connection reset by peer"};
    case ENOBUFS:
        return {"ENOBUFS", "no buffer space available"};
    case EISCONN:
        return {"EISCONN", "socket is already connected"};
    case ENOTCONN:
        return {"ENOTCONN", "socket is not connected"};
    case ETIMEDOUT:
        return {"ETIMEDOUT", "connection timed out"};
    case ECONNREFUSED:
        return {"ECONNREFUSED", "connection refused"};
    case EHOSTUNREACH:
        return {"EHOSTUNREACH", "host is unreachable"};
    case EALREADY:
        return {"EALREADY", "connection already in progress"};
    case EOVERFLOW:
        return {"EOVERFLOW", "value too large for defined data type"};
    case ECANCELED:
        return {"ECANCELED", "operation canceled"};
#ifdef ENODATA
    case ENODATA:
        return {"ENODATA", "no data available"};
#endif
    default:
        return {"UNKNOWN", "unknown error"};
    }
}

// Builds `Error{code, errno, syscall, path?}` with Node's message layout:
// "ENOENT: no such file or directory, sendto '/run/notify'".
inline Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall,
                              const std::string* path = nullptr) {
    const ErrnoName name = DescribeErrno(err);
    std::string message = std::string(name.code) + ": " + name.text + ", " + syscall;
    if (path != nullptr) {
        message += " '" + *path + "'";
    }
    Napi::Error error = Napi::Error::New(env, message);
    error.Set("errno", Napi::Number::New(env, -err));
    error.Set("code", Napi::String::New(env, name.code));
    error.Set("syscall", Napi::String::New(env, syscall));
    if (path != nullptr) {
        error.Set("path", Napi::String::New(env, *path));
    }
    return error;
}

} // namespace dstack_kms

#endif // DSTACK_KMS_NATIVE_ERRORS_H
