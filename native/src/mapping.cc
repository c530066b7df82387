// Mapping: one foreign mapping (or the M2P) exposed as ONE external ArrayBuffer, and the vectored
// page I/O that reads or writes its pages from a worker thread.
//
// Lifetime: the mapped memory belongs to a Region shared by the native Mapping object, the
// ArrayBuffer's finalizer and every in-flight I/O. unmap() first DETACHES the ArrayBuffer (so no
// JS view can reach the memory afterwards), then releases the memory at once, or when the last
// in-flight I/O completes. Whatever JS forgets, the last owner to go unmaps.
#include <poll.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <climits>
#include <cstring>

#include "common.h"

namespace xenmig {

namespace {

constexpr size_t kPage = 4096;

struct Region {
  std::shared_ptr<XenHandles> h;
  RegionKind kind;
  void *addr;
  size_t pages;       // pages addressable through the view (I/O bounds)
  size_t unmapBytes;  // bytes to release
  bool closing = false;
  bool released = false;
  int inflight = 0;

  Region(std::shared_ptr<XenHandles> h_, RegionKind k, void *a, size_t p, size_t u)
      : h(std::move(h_)), kind(k), addr(a), pages(p), unmapBytes(u) {}
  ~Region() { Release(); }

  void Release() {
    if (released) return;
    released = true;
    if (kind == RegionKind::Foreign)
      xenforeignmemory_unmap(h->fmem, addr, unmapBytes / kPage);
    else
      munmap(addr, unmapBytes);
  }
};

void FinalizeArrayBuffer(napi_env, void *, void *hint) { delete static_cast<std::shared_ptr<Region> *>(hint); }

class Mapping : public Napi::ObjectWrap<Mapping> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Mapping",
                       {
                           InstanceMethod<&Mapping::Unmap>("unmap"),
                           InstanceAccessor<&Mapping::Mapped>("mapped"),
                           InstanceAccessor<&Mapping::Inflight>("inflight"),
                       });
  }
  explicit Mapping(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Mapping>(info) {}

  std::shared_ptr<Region> region;
  Napi::Reference<Napi::ArrayBuffer> buffer;  // weak: only to detach it

 private:
  // unmap(): detach the ArrayBuffer, release the memory now or after in-flight I/O.
  // Returns true when the memory is released, false when deferred. Idempotent.
  Napi::Value Unmap(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!region) return Napi::Boolean::New(env, true);
    region->closing = true;
    if (!buffer.IsEmpty()) {
      Napi::ArrayBuffer ab = buffer.Value();
      if (!ab.IsEmpty() && !ab.IsDetached()) ab.Detach();
    }
    if (region->inflight == 0) region->Release();
    return Napi::Boolean::New(env, region->released);
  }

  Napi::Value Mapped(const Napi::CallbackInfo &info) {
    return Napi::Boolean::New(info.Env(), region && !region->closing);
  }

  Napi::Value Inflight(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), region ? region->inflight : 0);
  }
};

// readv/writev over the whole iovec list: partial transfers, EINTR, EAGAIN (poll) handled.
class PageIo : public Napi::AsyncWorker {
 public:
  PageIo(Napi::Env env, bool write, int fd, std::shared_ptr<Region> r, std::vector<iovec> iov, size_t total)
      : Napi::AsyncWorker(env, write ? "xenmig.writePages" : "xenmig.readPages"),
        deferred_(Napi::Promise::Deferred::New(env)),
        write_(write),
        fd_(fd),
        region_(std::move(r)),
        iov_(std::move(iov)),
        total_(total) {
    region_->inflight++;
  }

  Napi::Promise Promise() { return deferred_.Promise(); }
  void Keep(Napi::Value v) { keep_ = Napi::Persistent(v.As<Napi::Object>()); }
  void HasHeader(bool h) { header_ = h; }

  void Execute() override {
#ifdef MADV_POPULATE_READ
    // Fault the pages in before writev: a fault taken inside the copy into a pipe holds the pipe
    // locked while the reader waits. privcmd mappings are populated already (EINVAL, ignored).
    if (write_)
      for (size_t k = header_ ? 1 : 0; k < iov_.size(); k++) madvise(iov_[k].iov_base, iov_[k].iov_len, MADV_POPULATE_READ);
#endif
    size_t i = 0;
    while (i < iov_.size()) {
      int cnt = static_cast<int>(std::min<size_t>(IOV_MAX, iov_.size() - i));
      ssize_t n = write_ ? writev(fd_, &iov_[i], cnt) : readv(fd_, &iov_[i], cnt);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          struct pollfd p = {fd_, static_cast<short>(write_ ? POLLOUT : POLLIN), 0};
          if (poll(&p, 1, -1) < 0 && errno != EINTR) {
            err_ = errno;
            return;
          }
          continue;
        }
        err_ = errno;
        return;
      }
      if (n == 0 && !write_) {
        err_ = ENODATA;
        eof_ = true;
        return;
      }
      done_ += static_cast<size_t>(n);
      size_t left = static_cast<size_t>(n);
      while (i < iov_.size() && left >= iov_[i].iov_len) left -= iov_[i++].iov_len;
      if (left) {
        iov_[i].iov_base = static_cast<uint8_t *>(iov_[i].iov_base) + left;
        iov_[i].iov_len -= left;
      }
    }
  }

  void OnOK() override {
    Finish();
    Napi::Env env = Env();
    if (err_) {
      std::string detail = "fd " + std::to_string(fd_) + ", " + std::to_string(done_) + " of " +
                           std::to_string(total_) + " bytes" + (eof_ ? ", unexpected end of file" : "");
      deferred_.Reject(MakeXenError(env, write_ ? "writev" : "readv", err_, detail).Value());
    } else {
      deferred_.Resolve(Napi::Number::New(env, static_cast<double>(done_)));
    }
  }

  void OnError(const Napi::Error &e) override {
    Finish();
    deferred_.Reject(e.Value());
  }

 private:
  void Finish() {
    if (--region_->inflight == 0 && region_->closing) region_->Release();
  }

  Napi::Promise::Deferred deferred_;
  bool write_;
  int fd_;
  std::shared_ptr<Region> region_;
  std::vector<iovec> iov_;
  size_t total_;
  size_t done_ = 0;
  int err_ = 0;
  bool eof_ = false;
  bool header_ = false;
  Napi::ObjectReference keep_;
};

Mapping *ArgMapping(const Napi::CallbackInfo &info, size_t i) {
  Napi::Env env = info.Env();
  auto *data = env.GetInstanceData<AddonData>();
  if (i >= info.Length() || !info[i].IsObject() ||
      !info[i].As<Napi::Object>().InstanceOf(data->mappingCtor.Value()))
    throw Napi::TypeError::New(env, "mapping must be a native Mapping");
  Mapping *m = Mapping::Unwrap(info[i].As<Napi::Object>());
  if (!m->region) throw Napi::TypeError::New(env, "mapping is not initialised");
  if (m->region->closing) ThrowXen(env, "xenforeignmemory_map", EBADF, "the mapping was unmapped");
  return m;
}

// Appends the pages of `r` at `indices` to iov, merging runs of consecutive pages.
size_t AddPages(Napi::Env env, std::vector<iovec> &iov, Region &r, const uint32_t *idx, size_t n) {
  size_t total = 0;
  for (size_t k = 0; k < n; k++) {
    if (idx[k] >= r.pages) throw Napi::RangeError::New(env, "page index " + std::to_string(idx[k]) + " out of range");
    uint8_t *p = static_cast<uint8_t *>(r.addr) + static_cast<size_t>(idx[k]) * kPage;
    if (!iov.empty() && static_cast<uint8_t *>(iov.back().iov_base) + iov.back().iov_len == p &&
        iov.back().iov_len < (size_t(1) << 30))
      iov.back().iov_len += kPage;
    else
      iov.push_back({p, kPage});
    total += kPage;
  }
  return total;
}

// writePages(fd, header: Uint8Array, mapping, indices: Uint32Array) -> Promise<bytes written>
Napi::Value WritePages(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgI32(info, 0, "fd");
  auto header = ArgBytes(info, 1, "header");
  Mapping *m = ArgMapping(info, 2);
  auto idx = ArgU32Array(info, 3, "indices");
  std::vector<iovec> iov;
  iov.reserve(idx.second + 1);
  size_t total = header.second;
  if (header.second) iov.push_back({header.first, header.second});
  total += AddPages(env, iov, *m->region, idx.first, idx.second);
  auto *w = new PageIo(env, true, fd, m->region, std::move(iov), total);
  w->Keep(info[1]);
  w->HasHeader(header.second != 0);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// readPages(fd, mapping, indices: Uint32Array) -> Promise<bytes read>; EOF first is ENODATA.
Napi::Value ReadPages(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgI32(info, 0, "fd");
  Mapping *m = ArgMapping(info, 1);
  auto idx = ArgU32Array(info, 2, "indices");
  std::vector<iovec> iov;
  iov.reserve(idx.second);
  size_t total = AddPages(env, iov, *m->region, idx.first, idx.second);
  auto *w = new PageIo(env, false, fd, m->region, std::move(iov), total);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

Napi::Object NewMapping(Napi::Env env, std::shared_ptr<XenHandles> h, RegionKind kind, void *addr, size_t pages,
                        size_t unmapBytes, size_t viewBytes) {
  auto region = std::make_shared<Region>(std::move(h), kind, addr, pages, unmapBytes);
  auto *data = env.GetInstanceData<AddonData>();
  Napi::Object obj = data->mappingCtor.New({});
  Mapping *m = Mapping::Unwrap(obj);
  m->region = region;
  auto *hint = new std::shared_ptr<Region>(region);
  napi_value ab;
  napi_status st = napi_create_external_arraybuffer(env, addr, viewBytes, FinalizeArrayBuffer, hint, &ab);
  if (st != napi_ok) {
    delete hint;
    region->closing = true;
    NAPI_THROW_IF_FAILED(env, st, obj);
  }
  Napi::ArrayBuffer buf(env, ab);
  m->buffer = Napi::Weak(buf);
  obj.Set("buffer", buf);
  obj.Set("pages", Napi::Number::New(env, static_cast<double>(pages)));
  return obj;
}

Napi::Object InitMapping(Napi::Env env, Napi::Object exports, AddonData *data) {
  Napi::Function ctor = Mapping::Define(env);
  data->mappingCtor = Napi::Persistent(ctor);
  exports.Set("Mapping", ctor);
  exports.Set("writePages", Napi::Function::New(env, WritePages, "writePages"));
  exports.Set("readPages", Napi::Function::New(env, ReadPages, "readPages"));
  return exports;
}

}  // namespace xenmig
