#include "common.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>

#include <fcntl.h>

namespace xenmig {

namespace {

void LoggerVmessage(xentoollog_logger *base, xentoollog_level level, int errnoval, const char *context,
                    const char *format, va_list al) {
  auto *self = reinterpret_cast<CollectingLogger *>(base);
  if (level < XTL_DETAIL) return;
  char buf[1024];
  int n = 0;
  if (context) n = snprintf(buf, sizeof buf, "%s: ", context);
  if (n < 0) n = 0;
  if (static_cast<size_t>(n) < sizeof buf) vsnprintf(buf + n, sizeof buf - n, format, al);
  std::string msg(buf);
  if (errnoval >= 0 && msg.find(strerror(errnoval)) == std::string::npos && errnoval != 0) {
    msg += ": ";
    msg += strerror(errnoval);
  }
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r')) msg.pop_back();
  if (level >= XTL_WARN) self->last = msg;
  self->recent.push_back(std::move(msg));
  if (self->recent.size() > 16) self->recent.erase(self->recent.begin());
}

void LoggerProgress(xentoollog_logger *, const char *, const char *, int, unsigned long, unsigned long) {}

void LoggerDestroy(xentoollog_logger *) {}  // owned by XenHandles

}  // namespace

CollectingLogger::CollectingLogger() {
  base.vmessage = LoggerVmessage;
  base.progress = LoggerProgress;
  base.destroy = LoggerDestroy;
}

XenHandles::XenHandles() = default;

XenHandles::~XenHandles() {
  if (dirty.hbuf && xch) xc__hypercall_buffer_free_pages(xch, &dirty, dirtyPages);
  if (fmem) xenforeignmemory_close(fmem);
  if (xch) xc_interface_close(xch);
}

const char *ErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *n = strerrorname_np(err);
  if (n) return n;
#endif
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case EPIPE: return "EPIPE";
    case ERANGE: return "ERANGE";
    case ENOSYS: return "ENOSYS";
    case ENODATA: return "ENODATA";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOBUFS: return "ENOBUFS";
    default: return "EUNKNOWN";
  }
}

Napi::Error MakeXenError(Napi::Env env, const char *syscall, int err, const std::string &detail,
                         const std::string &log) {
  if (err <= 0) err = EIO;  // libxen sometimes fails without setting errno
  std::string msg = std::string(syscall) + " failed: " + strerror(err);
  if (!detail.empty()) msg += " (" + detail + ")";
  if (!log.empty()) msg += ": " + log;
  return MakeXenErrorMessage(env, msg, syscall, err);
}

Napi::Error MakeXenErrorMessage(Napi::Env env, const std::string &msg, const char *syscall, int err) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

void ThrowXen(Napi::Env env, const char *syscall, int err, const std::string &detail, const std::string &log) {
  throw MakeXenError(env, syscall, err, detail, log);
}

static Napi::Value Arg(const Napi::CallbackInfo &info, size_t i) {
  return i < info.Length() ? info[i] : info.Env().Undefined();
}

static void ThrowType(Napi::Env env, const char *name, const char *what) {
  throw Napi::TypeError::New(env, std::string(name) + " must be " + what);
}

uint32_t ArgU32(const Napi::CallbackInfo &info, size_t i, const char *name) {
  Napi::Value v = Arg(info, i);
  if (!v.IsNumber()) ThrowType(info.Env(), name, "a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint64_t>(d)))
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be an integer in 0..2^32-1");
  return static_cast<uint32_t>(d);
}

int32_t ArgI32(const Napi::CallbackInfo &info, size_t i, const char *name) {
  Napi::Value v = Arg(info, i);
  if (!v.IsNumber()) ThrowType(info.Env(), name, "a number");
  return v.As<Napi::Number>().Int32Value();
}

uint64_t ArgU64(const Napi::CallbackInfo &info, size_t i, const char *name) {
  Napi::Value v = Arg(info, i);
  if (v.IsBigInt()) {
    bool lossless = true;
    uint64_t r = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(info.Env(), std::string(name) + " must fit in 64 bits");
    return r;
  }
  if (!v.IsNumber()) ThrowType(info.Env(), name, "a number or bigint");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<uint64_t>(d)))
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be a safe non-negative integer");
  return static_cast<uint64_t>(d);
}

bool ArgBool(const Napi::CallbackInfo &info, size_t i, const char *name) {
  Napi::Value v = Arg(info, i);
  if (!v.IsBoolean()) ThrowType(info.Env(), name, "a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::pair<uint8_t *, size_t> ArgBytes(const Napi::CallbackInfo &info, size_t i, const char *name) {
  Napi::Value v = Arg(info, i);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    ThrowType(info.Env(), name, "a Uint8Array");
  auto a = v.As<Napi::Uint8Array>();
  return {a.Data(), a.ByteLength()};
}

std::pair<uint64_t *, size_t> ArgU64Array(const Napi::CallbackInfo &info, size_t i, const char *name) {
  Napi::Value v = Arg(info, i);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array)
    ThrowType(info.Env(), name, "a BigUint64Array");
  auto a = v.As<Napi::TypedArrayOf<uint64_t>>();
  return {a.Data(), a.ElementLength()};
}

std::pair<uint32_t *, size_t> ArgU32Array(const Napi::CallbackInfo &info, size_t i, const char *name) {
  Napi::Value v = Arg(info, i);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
    ThrowType(info.Env(), name, "a Uint32Array");
  auto a = v.As<Napi::Uint32Array>();
  return {a.Data(), a.ElementLength()};
}

// lockFile(fd, op) -> bool: an open-file-description record lock on the whole file
// (fcntl F_OFD_SETLK; op 0 = unlock, 1 = exclusive, 2 = shared), never waiting. false when another
// open file description holds a conflicting lock (EAGAIN/EACCES); any other failure throws. The
// kernel drops the lock when the last descriptor of the description closes (a killed holder too);
// it conflicts with classic POSIX fcntl locks such as libxl's.
Napi::Value LockFile(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgI32(info, 0, "fd");
  uint32_t op = ArgU32(info, 1, "op");
  if (op > 2) throw Napi::RangeError::New(env, "op must be 0 (unlock), 1 (exclusive) or 2 (shared)");
  struct flock fl;
  std::memset(&fl, 0, sizeof(fl));
  fl.l_type = op == 0 ? F_UNLCK : op == 1 ? F_WRLCK : F_RDLCK;
  fl.l_whence = SEEK_SET;  // l_start = l_len = 0: the whole file; l_pid must be 0 for OFD locks
  if (fcntl(fd, F_OFD_SETLK, &fl) == 0) return Napi::Boolean::New(env, true);
  int err = errno;
  if (op != 0 && (err == EAGAIN || err == EACCES)) return Napi::Boolean::New(env, false);
  ThrowXen(env, "fcntl", err, "F_OFD_SETLK fd " + std::to_string(fd));
}

// setPipeSize(fd, bytes) -> the pipe's capacity afterwards (fcntl F_SETPIPE_SZ; the kernel rounds
// up to a power-of-two number of pages; beyond /proc/sys/fs/pipe-max-size only a privileged caller
// may go: EPERM). Not a pipe: EBADF.
Napi::Value SetPipeSize(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgI32(info, 0, "fd");
  uint32_t bytes = ArgU32(info, 1, "bytes");
  if (bytes == 0 || bytes > (1u << 30)) throw Napi::RangeError::New(env, "bytes must be in 1..2^30");
  int r = fcntl(fd, F_SETPIPE_SZ, static_cast<int>(bytes));
  if (r < 0) ThrowXen(env, "fcntl", errno, "F_SETPIPE_SZ fd " + std::to_string(fd));
  return Napi::Number::New(env, r);
}

}  // namespace xenmig
