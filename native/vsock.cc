// One request/response exchange over an AF_VSOCK stream socket: the transport of Intel's Quote
// Generation Service on the host (legacy dstack quotes). Node has no AF_VSOCK.
// The framing is QGS's: the request is sent as given (the caller adds the 4-byte big-endian
// length); the reply's 4-byte big-endian length is read, then the body, unless the length is
// over maxResponse, in which case only the 4 length bytes are returned so the caller can say
// how large the refused reply was.
#include "addon.h"
#include "errors.h"

#include <linux/vm_sockets.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace dstack_kms {
namespace {

class VsockWorker final : public Napi::AsyncWorker {
public:
    VsockWorker(Napi::Env env, std::uint32_t cid, std::uint32_t port,
                std::vector<std::uint8_t> request, std::uint32_t maxResponse,
                std::uint32_t timeoutMs)
        : Napi::AsyncWorker(env, "dstack_kms:vsock_round_trip"), cid_(cid), port_(port),
          request_(std::move(request)), maxResponse_(maxResponse), timeoutMs_(timeoutMs),
          deferred_(Napi::Promise::Deferred::New(env)) {}

    Napi::Promise Promise() const {
        return deferred_.Promise();
    }

protected:
    void Execute() override {
        const int fd = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            Fail(errno, "socket");
            return;
        }
        Exchange(fd);
        ::close(fd);
    }

    void OnOK() override {
        Napi::Env env = Env();
        if (eof_) {
            // libuv's UV_EOF, as Node reports a stream that ended early
            Napi::Error error = Napi::Error::New(env, "EOF: end of file, read");
            error.Set("errno", Napi::Number::New(env, -4095));
            error.Set("code", Napi::String::New(env, "EOF"));
            error.Set("syscall", Napi::String::New(env, "read"));
            deferred_.Reject(error.Value());
            return;
        }
        if (error_ != 0) {
            deferred_.Reject(ErrnoError(env, error_, syscall_).Value());
            return;
        }
        deferred_.Resolve(
            Napi::Buffer<std::uint8_t>::Copy(env, response_.data(), response_.size()));
    }

    void OnError(const Napi::Error& error) override {
        deferred_.Reject(error.Value());
    }

private:
    void Fail(int err, const char* syscall) {
        error_ = err;
        syscall_ = syscall;
    }

    static std::int64_t NowMs() {
        timespec ts;
        ::clock_gettime(CLOCK_MONOTONIC, &ts);
        return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
    }

    // One deadline for the whole exchange: SO_RCVTIMEO alone is per call, so a peer trickling
    // a byte at a time could hold this thread-pool thread for the timeout times the reply size.
    // Re-armed with what is left before every blocking call; ETIMEDOUT once nothing is left.
    bool Arm(int fd, const char* syscall) {
        if (timeoutMs_ == 0) {
            return true;
        }
        const std::int64_t left = deadlineMs_ - NowMs();
        if (left <= 0) {
            Fail(ETIMEDOUT, syscall);
            return false;
        }
        timeval tv;
        tv.tv_sec = static_cast<time_t>(left / 1000);
        tv.tv_usec = static_cast<suseconds_t>((left % 1000) * 1000);
        if (::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
            ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
            Fail(errno, "setsockopt");
            return false;
        }
        return true;
    }

    void Exchange(int fd) {
        deadlineMs_ = NowMs() + timeoutMs_;
        if (!Arm(fd, "connect")) {
            return;
        }
        sockaddr_vm addr;
        std::memset(&addr, 0, sizeof(addr));
        addr.svm_family = AF_VSOCK;
        addr.svm_cid = cid_;
        addr.svm_port = port_;
        int rc;
        do {
            rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
        } while (rc != 0 && errno == EINTR);
        if (rc != 0) {
            Fail(errno, "connect");
            return;
        }
        std::size_t sent = 0;
        while (sent < request_.size()) {
            if (!Arm(fd, "write")) {
                return;
            }
            const ssize_t n =
                ::send(fd, request_.data() + sent, request_.size() - sent, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                Fail(errno, "write");
                return;
            }
            sent += static_cast<std::size_t>(n);
        }
        std::uint8_t header[4];
        if (!ReadExact(fd, header, sizeof(header))) {
            return;
        }
        const std::uint32_t length = (static_cast<std::uint32_t>(header[0]) << 24) |
                                     (static_cast<std::uint32_t>(header[1]) << 16) |
                                     (static_cast<std::uint32_t>(header[2]) << 8) |
                                     static_cast<std::uint32_t>(header[3]);
        response_.assign(header, header + sizeof(header));
        if (length > maxResponse_) {
            return;
        }
        response_.resize(sizeof(header) + length);
        ReadExact(fd, response_.data() + sizeof(header), length);
    }

    bool ReadExact(int fd, std::uint8_t* out, std::size_t size) {
        std::size_t got = 0;
        while (got < size) {
            if (!Arm(fd, "read")) {
                return false;
            }
            const ssize_t n = ::recv(fd, out + got, size - got, 0);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                Fail(errno, "read");
                return false;
            }
            if (n == 0) {
                eof_ = true;
                return false;
            }
            got += static_cast<std::size_t>(n);
        }
        return true;
    }

    const std::uint32_t cid_;
    const std::uint32_t port_;
    const std::vector<std::uint8_t> request_;
    const std::uint32_t maxResponse_;
    const std::uint32_t timeoutMs_;
    std::int64_t deadlineMs_ = 0;
    std::vector<std::uint8_t> response_;
    int error_ = 0;
    bool eof_ = false;
    const char* syscall_ = "";
    Napi::Promise::Deferred deferred_;
};

std::uint32_t U32(Napi::Env env, const Napi::Value& value, const char* name) {
    if (!value.IsNumber()) {
        throw Napi::TypeError::New(env, std::string(name) + " must be a number");
    }
    const double v = value.As<Napi::Number>().DoubleValue();
    if (!(v >= 0 && v <= 4294967295.0) || v != static_cast<double>(static_cast<std::uint32_t>(v))) {
        throw Napi::RangeError::New(env, std::string(name) + " must be a 32-bit unsigned integer");
    }
    return static_cast<std::uint32_t>(v);
}

} // namespace

Napi::Value VsockRoundTrip(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 5) {
        throw Napi::TypeError::New(
            env, "vsockRoundTrip(cid, port, request, maxResponse, timeoutMs) takes 5 arguments");
    }
    const std::uint32_t cid = U32(env, info[0], "cid");
    const std::uint32_t port = U32(env, info[1], "port");
    if (!info[2].IsTypedArray() ||
        info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
        throw Napi::TypeError::New(env, "request must be a Buffer or Uint8Array");
    }
    const Napi::Uint8Array request = info[2].As<Napi::Uint8Array>();
    const std::uint32_t maxResponse = U32(env, info[3], "maxResponse");
    const std::uint32_t timeoutMs = U32(env, info[4], "timeoutMs");
    std::vector<std::uint8_t> bytes(request.Data(), request.Data() + request.ByteLength());
    auto* worker = new VsockWorker(env, cid, port, std::move(bytes), maxResponse, timeoutMs);
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
}

} // namespace dstack_kms
