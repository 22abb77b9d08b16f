// The two /dev/tdx_guest ioctls user space may need: TDX_CMD_GET_REPORT0 (a TDREPORT for 64
// bytes of REPORTDATA; mainline since 6.2) and the legacy out-of-tree TDX_CMD_EXTEND_RTMR
// (mainline ≥ 6.16 extends through sysfs instead, which is plain file I/O in TypeScript).
//
// Debian 12's kernel headers (6.1) lack linux/tdx-guest.h, so the structs and request numbers are
// declared here and pinned with static_asserts to the request numbers and sizes upstream's
// tdx-attest uses. The device path is a parameter so tests can aim at a missing or ordinary file
// and observe the errno (ENOENT, ENOTTY) without TDX hardware.
#include "addon.h"
#include "errors.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace dstack_kms {
namespace {

constexpr std::size_t kReportDataSize = 64;
constexpr std::size_t kTdReportSize = 1024;
constexpr std::size_t kRtmrDigestSize = 48;

// include/uapi/linux/tdx-guest.h
struct TdxReportReq {
    std::uint8_t reportdata[kReportDataSize];
    std::uint8_t tdreport[kTdReportSize];
};
static_assert(sizeof(TdxReportReq) == 1088, "struct tdx_report_req is 1088 bytes");

// dstack's old out-of-tree driver: 48 digest bytes and the RTMR index, unpadded.
struct TdxExtendRtmrReq {
    std::uint8_t data[kRtmrDigestSize];
    std::uint8_t index;
};
static_assert(sizeof(TdxExtendRtmrReq) == 49, "struct tdx_extend_rtmr_req is 49 bytes");

const unsigned long kTdxCmdGetReport0 = _IOWR('T', 1, TdxReportReq);
const unsigned long kTdxCmdExtendRtmr = _IOR('T', 3, TdxExtendRtmrReq);
static_assert(_IOWR('T', 1, TdxReportReq) == 0xc4405401u, "TDX_CMD_GET_REPORT0");
static_assert(_IOR('T', 3, TdxExtendRtmrReq) == 0x80315403u, "TDX_CMD_EXTEND_RTMR (legacy)");

// Opens the device, runs one ioctl, closes. errno and the failing syscall travel back to the
// main thread in the worker; an ioctl that returns a positive value (the old module passed raw
// TDCALL statuses through) is a failure too, reported as EIO with the status attached.
class TdxIoctlWorker : public Napi::AsyncWorker {
public:
    TdxIoctlWorker(Napi::Env env, const char* name, std::string path)
        : Napi::AsyncWorker(env, name), path_(std::move(path)),
          deferred_(Napi::Promise::Deferred::New(env)) {}

    Napi::Promise Promise() const {
        return deferred_.Promise();
    }

protected:
    virtual unsigned long Request() const = 0;
    virtual void* Argument() = 0;
    virtual Napi::Value Result(Napi::Env env) = 0;

    void Execute() override {
        int fd;
        do {
            fd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) {
            error_ = errno;
            syscall_ = "open";
            return;
        }
        int rc;
        do {
            rc = ::ioctl(fd, Request(), Argument());
        } while (rc < 0 && errno == EINTR);
        const int ioctlError = errno;
        ::close(fd);
        if (rc < 0) {
            error_ = ioctlError;
            syscall_ = "ioctl";
        } else if (rc > 0) {
            error_ = EIO;
            syscall_ = "ioctl";
            status_ = rc;
        }
    }

    void OnOK() override {
        Napi::Env env = Env();
        if (error_ != 0) {
            Napi::Error error = ErrnoError(env, error_, syscall_, &path_);
            if (status_ != 0) {
                error.Set("status", Napi::Number::New(env, status_));
            }
            deferred_.Reject(error.Value());
            return;
        }
        deferred_.Resolve(Result(env));
    }

    void OnError(const Napi::Error& error) override {
        deferred_.Reject(error.Value());
    }

private:
    const std::string path_;
    int error_ = 0;
    int status_ = 0;
    const char* syscall_ = "";
    Napi::Promise::Deferred deferred_;
};

class GetReportWorker final : public TdxIoctlWorker {
public:
    GetReportWorker(Napi::Env env, std::string path, const std::uint8_t* reportData)
        : TdxIoctlWorker(env, "dstack_kms:tdx_get_report0", std::move(path)) {
        std::memset(&req_, 0, sizeof(req_));
        std::memcpy(req_.reportdata, reportData, kReportDataSize);
    }

protected:
    unsigned long Request() const override {
        return kTdxCmdGetReport0;
    }
    void* Argument() override {
        return &req_;
    }
    Napi::Value Result(Napi::Env env) override {
        return Napi::Buffer<std::uint8_t>::Copy(env, req_.tdreport, kTdReportSize);
    }

private:
    TdxReportReq req_;
};

class ExtendRtmrWorker final : public TdxIoctlWorker {
public:
    ExtendRtmrWorker(Napi::Env env, std::string path, std::uint8_t index,
                     const std::uint8_t* digest)
        : TdxIoctlWorker(env, "dstack_kms:tdx_extend_rtmr", std::move(path)) {
        std::memcpy(req_.data, digest, kRtmrDigestSize);
        req_.index = index;
    }

protected:
    unsigned long Request() const override {
        return kTdxCmdExtendRtmr;
    }
    void* Argument() override {
        return &req_;
    }
    Napi::Value Result(Napi::Env env) override {
        return env.Undefined();
    }

private:
    TdxExtendRtmrReq req_;
};

std::string DevicePath(Napi::Env env, const Napi::Value& value) {
    if (!value.IsString()) {
        throw Napi::TypeError::New(env, "devicePath must be a string");
    }
    std::string path = value.As<Napi::String>().Utf8Value();
    if (path.empty() || path.find('\0') != std::string::npos) {
        throw Napi::TypeError::New(env, "devicePath must be non-empty and contain no NUL byte");
    }
    return path;
}

Napi::Uint8Array Bytes(Napi::Env env, const Napi::Value& value, const char* name,
                       std::size_t size) {
    if (!value.IsTypedArray() ||
        value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
        throw Napi::TypeError::New(env, std::string(name) + " must be a Buffer or Uint8Array");
    }
    Napi::Uint8Array bytes = value.As<Napi::Uint8Array>();
    if (bytes.ByteLength() != size) {
        throw Napi::RangeError::New(env, std::string(name) + " must be exactly " +
                                             std::to_string(size) + " bytes");
    }
    return bytes;
}

} // namespace

Napi::Value TdxGetReport0(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 2) {
        throw Napi::TypeError::New(env, "tdxGetReport0(devicePath, reportData) takes 2 arguments");
    }
    std::string path = DevicePath(env, info[0]);
    Napi::Uint8Array reportData = Bytes(env, info[1], "reportData", kReportDataSize);
    auto* worker = new GetReportWorker(env, std::move(path), reportData.Data());
    Napi::Promise promise = worker->Promise();
    worker->Queue(); // the worker deletes itself after OnOK/OnError
    return promise;
}

Napi::Value TdxExtendRtmr(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 3) {
        throw Napi::TypeError::New(env,
                                   "tdxExtendRtmr(devicePath, index, digest) takes 3 arguments");
    }
    std::string path = DevicePath(env, info[0]);
    if (!info[1].IsNumber()) {
        throw Napi::TypeError::New(env, "index must be a number");
    }
    const double index = info[1].As<Napi::Number>().DoubleValue();
    // The kernel answers EINVAL for an index it refuses; 0..255 is all the struct can carry.
    if (!(index >= 0 && index <= 255) || index != static_cast<double>(static_cast<int>(index))) {
        throw Napi::RangeError::New(env, "index must be an integer from 0 to 255");
    }
    Napi::Uint8Array digest = Bytes(env, info[2], "digest", kRtmrDigestSize);
    auto* worker =
        new ExtendRtmrWorker(env, std::move(path), static_cast<std::uint8_t>(index), digest.Data());
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
}

} // namespace dstack_kms
