// Shared pieces of the xenmig addon: the per-handle state, the collecting logger, errors.
#pragma once

#include <napi.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "xen_headers.h"

namespace xenmig {

// A xentoollog logger that keeps libxen's messages instead of printing them to stderr.
// Only the JS thread calls into libxen, so no locking is needed.
struct CollectingLogger {
  xentoollog_logger base;  // must stay first: libxen sees a xentoollog_logger*
  std::string last;        // last message at XTL_WARN or above since Reset()
  std::vector<std::string> recent;  // last few messages of any level >= XTL_DETAIL

  CollectingLogger();
  void Reset() { last.clear(); }
  xentoollog_logger *get() { return &base; }
};

// The open libxen handles of one Interface. Mappings and in-flight I/O hold a shared_ptr so the
// foreign-memory handle outlives every mapping made with it, whatever order JS drops things in.
struct XenHandles {
  CollectingLogger logger;
  xc_interface *xch = nullptr;
  xenforeignmemory_handle *fmem = nullptr;
  // Cached hypercall-safe buffer for the log-dirty bitmap, grown to the largest p2m seen.
  xc_hypercall_buffer_t dirty{};
  int dirtyPages = 0;

  XenHandles();
  ~XenHandles();
  XenHandles(const XenHandles &) = delete;
  XenHandles &operator=(const XenHandles &) = delete;
};

// Per-addon-instance data (worker threads and contexts may load the addon more than once).
struct AddonData {
  Napi::FunctionReference interfaceCtor;
  Napi::FunctionReference mappingCtor;
};

// Builds the Error every failing call throws: message "<syscall> failed: <strerror>[ (<detail>)][: <log>]",
// with code (errno name), errno (positive) and syscall set.
Napi::Error MakeXenError(Napi::Env env, const char *syscall, int err, const std::string &detail = {},
                         const std::string &log = {});
Napi::Error MakeXenErrorMessage(Napi::Env env, const std::string &message, const char *syscall, int err);
[[noreturn]] void ThrowXen(Napi::Env env, const char *syscall, int err, const std::string &detail = {},
                           const std::string &log = {});
const char *ErrnoName(int err);
// lockFile(fd, op): fcntl F_OFD_SETLK on the whole file, without waiting (common.cc)
Napi::Value LockFile(const Napi::CallbackInfo &info);
Napi::Value SetPipeSize(const Napi::CallbackInfo &info);

// Argument helpers: TypeScript validates; these only stop a misuse from crashing the process.
uint32_t ArgU32(const Napi::CallbackInfo &info, size_t i, const char *name);
int32_t ArgI32(const Napi::CallbackInfo &info, size_t i, const char *name);
uint64_t ArgU64(const Napi::CallbackInfo &info, size_t i, const char *name);
bool ArgBool(const Napi::CallbackInfo &info, size_t i, const char *name);
// A Uint8Array / Buffer argument: pointer and length.
std::pair<uint8_t *, size_t> ArgBytes(const Napi::CallbackInfo &info, size_t i, const char *name);
// A BigUint64Array argument.
std::pair<uint64_t *, size_t> ArgU64Array(const Napi::CallbackInfo &info, size_t i, const char *name);
std::pair<uint32_t *, size_t> ArgU32Array(const Napi::CallbackInfo &info, size_t i, const char *name);

Napi::Object InitInterface(Napi::Env env, Napi::Object exports, AddonData *data);
Napi::Object InitMapping(Napi::Env env, Napi::Object exports, AddonData *data);
Napi::Object InitBuilder(Napi::Env env, Napi::Object exports);  // builder.cc: real-host domain creation
Napi::Object InitNetlink(Napi::Env env, Napi::Object exports);  // netlink.cc: generic netlink sockets
#ifdef XENMIG_MOCK
Napi::Object InitMock(Napi::Env env, Napi::Object exports);
#endif

// Creates a mapping object (native Mapping + external ArrayBuffer) for memory mapped through
// `h`; takes ownership of addr. kind: foreign mapping (xenforeignmemory_unmap) or plain munmap.
enum class RegionKind { Foreign, Munmap };
Napi::Object NewMapping(Napi::Env env, std::shared_ptr<XenHandles> h, RegionKind kind, void *addr,
                        size_t pages, size_t unmapBytes, size_t viewBytes);

}  // namespace xenmig

// In the mock flavour every libxen entry point is a weak reference, so a function the mock does not
// (yet) provide is an ENOSYS error instead of a symbol lookup failure that aborts the process.
#ifdef XENMIG_MOCK
#define XENMIG_REQUIRE(env, fn)                                                       \
  do {                                                                                \
    if (reinterpret_cast<void *>(&fn) == nullptr)                                     \
      ::xenmig::ThrowXen(env, #fn, ENOSYS, "not provided by the mock libxenctrl");    \
  } while (0)
#else
#define XENMIG_REQUIRE(env, fn) \
  do {                          \
  } while (0)
#endif
