// flock(2) on a descriptor the caller opened. A blocking flock can wait for as long as another
// process holds the lock, so it runs on the libuv thread pool instead of the event loop.
#include "addon.h"
#include "errors.h"

#include <sys/file.h>

#include <cerrno>
#include <climits>
#include <string>

namespace dstack_kms {
namespace {

class FlockWorker final : public Napi::AsyncWorker {
public:
    FlockWorker(Napi::Env env, int fd, int operation)
        : Napi::AsyncWorker(env, "dstack_kms:flock"), fd_(fd), operation_(operation),
          deferred_(Napi::Promise::Deferred::New(env)) {}

    Napi::Promise Promise() const {
        return deferred_.Promise();
    }

protected:
    void Execute() override {
        int rc;
        do {
            rc = ::flock(fd_, operation_);
        } while (rc != 0 && errno == EINTR);
        error_ = rc == 0 ? 0 : errno;
    }

    // The errno travels in error_ rather than through SetError(), which only carries a message.
    void OnOK() override {
        Napi::Env env = Env();
        if (error_ != 0) {
            deferred_.Reject(ErrnoError(env, error_, "flock").Value());
            return;
        }
        deferred_.Resolve(env.Undefined());
    }

    void OnError(const Napi::Error& error) override {
        deferred_.Reject(error.Value());
    }

private:
    const int fd_;
    const int operation_;
    int error_ = 0;
    Napi::Promise::Deferred deferred_;
};

int ParseOperation(Napi::Env env, const Napi::Value& value) {
    if (!value.IsString()) {
        throw Napi::TypeError::New(env, "operation must be a string");
    }
    const std::string op = value.As<Napi::String>().Utf8Value();
    if (op == "exclusive") {
        return LOCK_EX;
    }
    if (op == "shared") {
        return LOCK_SH;
    }
    if (op == "unlock") {
        return LOCK_UN;
    }
    throw Napi::RangeError::New(env, "operation must be 'exclusive', 'shared' or 'unlock'");
}

} // namespace

Napi::Value Flock(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 3) {
        throw Napi::TypeError::New(env, "flock(fd, operation, nonBlocking) takes 3 arguments");
    }
    if (!info[0].IsNumber()) {
        throw Napi::TypeError::New(env, "fd must be a number");
    }
    const double fd = info[0].As<Napi::Number>().DoubleValue();
    if (!(fd >= 0 && fd <= INT_MAX) || fd != static_cast<double>(static_cast<int>(fd))) {
        throw Napi::RangeError::New(env, "fd must be a non-negative 32-bit integer");
    }
    int operation = ParseOperation(env, info[1]);
    if (!info[2].IsBoolean()) {
        throw Napi::TypeError::New(env, "nonBlocking must be a boolean");
    }
    if (info[2].As<Napi::Boolean>().Value()) {
        operation |= LOCK_NB;
    }

    auto* worker = new FlockWorker(env, static_cast<int>(fd), operation);
    Napi::Promise promise = worker->Promise();
    worker->Queue(); // the worker deletes itself after OnOK/OnError
    return promise;
}

} // namespace dstack_kms
