// Interface: one open libxenctrl + libxenforeignmemory handle pair, and the flat calls on it.
// Every method takes already-validated arguments (src/xen/hypervisor.ts checks them) and maps
// one libxen call (or a size query + fetch) to one JS call. No policy lives here.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common.h"

namespace xenmig {

namespace {

constexpr size_t kPage = 4096;

class Interface : public Napi::ObjectWrap<Interface> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "Interface",
        {
            InstanceMethod<&Interface::Close>("close"),
            InstanceMethod<&Interface::Version>("version"),
            InstanceMethod<&Interface::DomainInfo>("domainInfo"),
            InstanceMethod<&Interface::ListDomains>("listDomains"),
            InstanceMethod<&Interface::Pause>("pause"),
            InstanceMethod<&Interface::Unpause>("unpause"),
            InstanceMethod<&Interface::Resume>("resume"),
            InstanceMethod<&Interface::Shutdown>("shutdown"),
            InstanceMethod<&Interface::Destroy>("destroy"),
            InstanceMethod<&Interface::NrGpfns>("nrGpfns"),
            InstanceMethod<&Interface::MaxGpfn>("maxGpfn"),
            InstanceMethod<&Interface::GuestWidth>("guestWidth"),
            InstanceMethod<&Interface::ShadowControl>("shadowControl"),
            InstanceMethod<&Interface::LogDirty>("logDirty"),
            InstanceMethod<&Interface::Map>("map"),
            InstanceMethod<&Interface::PfnTypes>("pfnTypes"),
            InstanceMethod<&Interface::PopulatePhysmap>("populatePhysmap"),
            InstanceMethod<&Interface::MapM2p>("mapM2p"),
            InstanceMethod<&Interface::PinTables>("pinTables"),
            InstanceMethod<&Interface::RecordGet<VcpuContext>>("vcpuContextGet"),
            InstanceMethod<&Interface::RecordSet<VcpuContext>>("vcpuContextSet"),
            InstanceMethod<&Interface::RecordGet<ExtContext>>("vcpuExtendedGet"),
            InstanceMethod<&Interface::RecordSet<ExtContext>>("vcpuExtendedSet"),
            InstanceMethod<&Interface::RecordGet<Xsave>>("vcpuXsaveGet"),
            InstanceMethod<&Interface::RecordSet<Xsave>>("vcpuXsaveSet"),
            InstanceMethod<&Interface::RecordGet<Msrs>>("vcpuMsrsGet"),
            InstanceMethod<&Interface::RecordSet<Msrs>>("vcpuMsrsSet"),
            InstanceMethod<&Interface::VcpuOnline>("vcpuOnline"),
            InstanceMethod<&Interface::RecordGet<HvmContext>>("hvmContextGet"),
            InstanceMethod<&Interface::RecordSet<HvmContext>>("hvmContextSet"),
            InstanceMethod<&Interface::HvmParamGet>("hvmParamGet"),
            InstanceMethod<&Interface::HvmParamSet>("hvmParamSet"),
            InstanceMethod<&Interface::TscInfoGet>("tscInfoGet"),
            InstanceMethod<&Interface::TscInfoSet>("tscInfoSet"),
            InstanceMethod<&Interface::CpuPolicyGet>("cpuPolicyGet"),
            InstanceMethod<&Interface::CpuPolicySet>("cpuPolicySet"),
            InstanceMethod<&Interface::LastLog>("lastLog"),
        });
  }

  // new Interface(): opens the handles. Throws ENOENT without touching libxen when the system
  // flavour finds no /dev/xen/privcmd, so nothing is printed and the error says why.
  explicit Interface(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Interface>(info) {
    Napi::Env env = info.Env();
#ifndef XENMIG_MOCK
    if (access("/dev/xen/privcmd", F_OK) != 0) {
      throw MakeXenErrorMessage(env, "no Xen hypervisor: /dev/xen/privcmd missing", "xc_interface_open", ENOENT);
    }
#endif
    XENMIG_REQUIRE(env, xc_interface_open);
    XENMIG_REQUIRE(env, xenforeignmemory_open);
    auto h = std::make_shared<XenHandles>();
    errno = 0;
    h->xch = xc_interface_open(h->logger.get(), h->logger.get(), 0);
    if (!h->xch) ThrowXen(env, "xc_interface_open", errno, {}, h->logger.last);
    errno = 0;
    h->fmem = xenforeignmemory_open(h->logger.get(), 0);
    if (!h->fmem) ThrowXen(env, "xenforeignmemory_open", errno, {}, h->logger.last);
    h_ = std::move(h);
  }

 private:
  std::shared_ptr<XenHandles> h_;

  // The open handles, or EBADF after close(). Resets the logger so an error carries only the
  // messages of the failing call.
  XenHandles &H(Napi::Env env, const char *fn) {
    if (!h_) ThrowXen(env, fn, EBADF, "the hypervisor handle is closed");
    h_->logger.Reset();
    return *h_;
  }

  [[noreturn]] void Fail(Napi::Env env, const char *fn, int err, const std::string &detail = {}) {
    ThrowXen(env, fn, err, detail, h_ ? h_->logger.last : std::string());
  }

  static std::string Dom(uint32_t domid) { return "domid " + std::to_string(domid); }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    h_.reset();  // handles close once no mapping uses them
    return info.Env().Undefined();
  }

  Napi::Value LastLog(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Array a = Napi::Array::New(env);
    if (h_)
      for (size_t i = 0; i < h_->logger.recent.size(); i++) a.Set(i, h_->logger.recent[i]);
    return a;
  }

  Napi::Value Version(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto &h = H(env, "xc_version");
    XENMIG_REQUIRE(env, xc_version);
    errno = 0;
    int v = xc_version(h.xch, XENVER_version, nullptr);
    if (v < 0) Fail(env, "xc_version", errno);
    return Napi::Number::New(env, v);
  }

  static Napi::Object InfoObject(Napi::Env env, const xc_domaininfo_t &d) {
    Napi::Object o = Napi::Object::New(env);
    uint32_t f = d.flags;
    bool shutdown = f & XEN_DOMINF_shutdown;
    o.Set("domid", Napi::Number::New(env, d.domain));
    o.Set("hvm", Napi::Boolean::New(env, f & XEN_DOMINF_hvm_guest));
    o.Set("dying", Napi::Boolean::New(env, f & XEN_DOMINF_dying));
    o.Set("paused", Napi::Boolean::New(env, f & XEN_DOMINF_paused));
    o.Set("running", Napi::Boolean::New(env, f & XEN_DOMINF_running));
    o.Set("blocked", Napi::Boolean::New(env, f & XEN_DOMINF_blocked));
    o.Set("shutdown", Napi::Boolean::New(env, shutdown));
    o.Set("shutdownReason", Napi::Number::New(env, (f >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask));
    o.Set("hap", Napi::Boolean::New(env, f & XEN_DOMINF_hap));
    o.Set("totPages", Napi::Number::New(env, static_cast<double>(d.tot_pages)));
    o.Set("maxPages", Napi::Number::New(env, static_cast<double>(d.max_pages)));
    o.Set("sharedInfoFrame", Napi::Number::New(env, static_cast<double>(d.shared_info_frame)));
    o.Set("maxVcpuId", Napi::Number::New(env, d.max_vcpu_id));
    o.Set("onlineVcpus", Napi::Number::New(env, d.nr_online_vcpus));
    o.Set("handle", Napi::Buffer<uint8_t>::Copy(env, d.handle, sizeof(d.handle)));
    o.Set("cpuTime", Napi::Number::New(env, static_cast<double>(d.cpu_time)));
    return o;
  }

#ifndef HAVE_XC_DOMAIN_GETINFO_SINGLE
  static Napi::Object InfoObject(Napi::Env env, const xc_dominfo_t &d) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("domid", Napi::Number::New(env, d.domid));
    o.Set("hvm", Napi::Boolean::New(env, d.hvm));
    o.Set("dying", Napi::Boolean::New(env, d.dying));
    o.Set("paused", Napi::Boolean::New(env, d.paused));
    o.Set("running", Napi::Boolean::New(env, d.running));
    o.Set("blocked", Napi::Boolean::New(env, d.blocked));
    o.Set("shutdown", Napi::Boolean::New(env, d.shutdown));
    o.Set("shutdownReason", Napi::Number::New(env, d.shutdown_reason));
    o.Set("hap", Napi::Boolean::New(env, d.hap));
    o.Set("totPages", Napi::Number::New(env, static_cast<double>(d.nr_pages)));
    o.Set("maxPages", Napi::Number::New(env, static_cast<double>(d.max_memkb / (kPage / 1024))));
    o.Set("sharedInfoFrame", Napi::Number::New(env, static_cast<double>(d.shared_info_frame)));
    o.Set("maxVcpuId", Napi::Number::New(env, d.max_vcpu_id));
    o.Set("onlineVcpus", Napi::Number::New(env, d.nr_online_vcpus));
    o.Set("handle", Napi::Buffer<uint8_t>::Copy(env, d.handle, sizeof(d.handle)));
    o.Set("cpuTime", Napi::Number::New(env, static_cast<double>(d.cpu_time)));
    return o;
  }
#endif

  // One domain's info; ESRCH when it does not exist.
  Napi::Value DomainInfo(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
#ifdef HAVE_XC_DOMAIN_GETINFO_SINGLE
    auto &h = H(env, "xc_domain_getinfo_single");
    XENMIG_REQUIRE(env, xc_domain_getinfo_single);
    xc_domaininfo_t d;
    memset(&d, 0, sizeof d);
    errno = 0;
    if (xc_domain_getinfo_single(h.xch, domid, &d) < 0) Fail(env, "xc_domain_getinfo_single", errno, Dom(domid));
    return InfoObject(env, d);
#else
    auto &h = H(env, "xc_domain_getinfo");
    XENMIG_REQUIRE(env, xc_domain_getinfo);
    xc_dominfo_t d;
    memset(&d, 0, sizeof d);
    errno = 0;
    int n = xc_domain_getinfo(h.xch, domid, 1, &d);
    if (n < 0) Fail(env, "xc_domain_getinfo", errno, Dom(domid));
    // <= 4.17 returns the next existing domain when `domid` does not exist.
    if (n == 0 || d.domid != domid) Fail(env, "xc_domain_getinfo", ESRCH, Dom(domid));
    return InfoObject(env, d);
#endif
  }

  Napi::Value ListDomains(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto &h = H(env, "xc_domain_getinfolist");
    XENMIG_REQUIRE(env, xc_domain_getinfolist);
    Napi::Array out = Napi::Array::New(env);
    std::vector<xc_domaininfo_t> buf(256);
    uint32_t next = 0, k = 0;
    for (;;) {
      errno = 0;
      int n = xc_domain_getinfolist(h.xch, next, buf.size(), buf.data());
      if (n < 0) Fail(env, "xc_domain_getinfolist", errno);
      for (int i = 0; i < n; i++) out.Set(k++, InfoObject(env, buf[i]));
      if (n < static_cast<int>(buf.size())) break;
      next = buf[n - 1].domain + 1;
    }
    return out;
  }

#define DOMID_CALL(Method, fn)                                   \
  Napi::Value Method(const Napi::CallbackInfo &info) {           \
    Napi::Env env = info.Env();                                  \
    uint32_t domid = ArgU32(info, 0, "domid");                   \
    auto &h = H(env, #fn);                                       \
    XENMIG_REQUIRE(env, fn);                                     \
    errno = 0;                                                   \
    if (fn(h.xch, domid) < 0) Fail(env, #fn, errno, Dom(domid)); \
    return env.Undefined();                                      \
  }
  DOMID_CALL(Pause, xc_domain_pause)
  DOMID_CALL(Unpause, xc_domain_unpause)
  DOMID_CALL(Destroy, xc_domain_destroy)
#undef DOMID_CALL

  Napi::Value Resume(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    bool fast = ArgBool(info, 1, "fast");
    auto &h = H(env, "xc_domain_resume");
    XENMIG_REQUIRE(env, xc_domain_resume);
    errno = 0;
    if (xc_domain_resume(h.xch, domid, fast ? 1 : 0) < 0) Fail(env, "xc_domain_resume", errno, Dom(domid));
    return env.Undefined();
  }

  Napi::Value Shutdown(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    int reason = ArgI32(info, 1, "reason");
    auto &h = H(env, "xc_domain_shutdown");
    XENMIG_REQUIRE(env, xc_domain_shutdown);
    errno = 0;
    if (xc_domain_shutdown(h.xch, domid, reason) < 0) Fail(env, "xc_domain_shutdown", errno, Dom(domid));
    return env.Undefined();
  }

  Napi::Value NrGpfns(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    auto &h = H(env, "xc_domain_nr_gpfns");
    XENMIG_REQUIRE(env, xc_domain_nr_gpfns);
    xen_pfn_t n = 0;
    errno = 0;
    if (xc_domain_nr_gpfns(h.xch, domid, &n) < 0) Fail(env, "xc_domain_nr_gpfns", errno, Dom(domid));
    return Napi::Number::New(env, static_cast<double>(n));
  }

  Napi::Value MaxGpfn(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    auto &h = H(env, "xc_domain_maximum_gpfn");
    XENMIG_REQUIRE(env, xc_domain_maximum_gpfn);
    xen_pfn_t n = 0;
    errno = 0;
    if (xc_domain_maximum_gpfn(h.xch, domid, &n) < 0) Fail(env, "xc_domain_maximum_gpfn", errno, Dom(domid));
    return Napi::Number::New(env, static_cast<double>(n));
  }

  Napi::Value GuestWidth(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    auto &h = H(env, "xc_domain_get_guest_width");
    XENMIG_REQUIRE(env, xc_domain_get_guest_width);
    unsigned int w = 0;
    errno = 0;
    if (xc_domain_get_guest_width(h.xch, domid, &w) < 0) Fail(env, "xc_domain_get_guest_width", errno, Dom(domid));
    return Napi::Number::New(env, w);
  }

  // shadowControl(domid, op): XEN_DOMCTL_SHADOW_OP_OFF (0) / ENABLE_LOGDIRTY (2).
  Napi::Value ShadowControl(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    uint32_t op = ArgU32(info, 1, "op");
    auto &h = H(env, "xc_shadow_control");
    XENMIG_REQUIRE(env, xc_shadow_control);
    errno = 0;
    if (xc_shadow_control(h.xch, domid, op, nullptr, 0) < 0)
      Fail(env, "xc_shadow_control", errno, Dom(domid) + ", op " + std::to_string(op));
    return env.Undefined();
  }

  // logDirty(domid, op CLEAN(11)|PEEK(12), bitmap, pages, mode) -> [faultCount, dirtyCount].
  // The hypercall buffer is cached per handle and grown to the largest p2m seen; the bitmap is
  // copied out into `bitmap` (ceil(pages/64)*8 bytes, checked by the caller).
  Napi::Value LogDirty(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    uint32_t op = ArgU32(info, 1, "op");
    auto bitmap = ArgBytes(info, 2, "bitmap");
    uint64_t pages = ArgU64(info, 3, "pages");
    uint32_t mode = ArgU32(info, 4, "mode");
    size_t bytes = ((pages + 63) / 64) * 8;
    if (bitmap.second < bytes) throw Napi::RangeError::New(env, "bitmap too small for pages");
    auto &h = H(env, "xc_logdirty_control");
    XENMIG_REQUIRE(env, xc_logdirty_control);
    XENMIG_REQUIRE(env, xc__hypercall_buffer_alloc_pages);
    XENMIG_REQUIRE(env, xc__hypercall_buffer_free_pages);
    int need = static_cast<int>((bytes + kPage - 1) / kPage);
    if (need == 0) need = 1;
    if (h.dirtyPages < need) {
      if (h.dirty.hbuf) xc__hypercall_buffer_free_pages(h.xch, &h.dirty, h.dirtyPages);
      h.dirty = xc_hypercall_buffer_t{};
      h.dirty.ubuf = reinterpret_cast<void *>(-1);
      h.dirtyPages = 0;
      errno = 0;
      if (!xc__hypercall_buffer_alloc_pages(h.xch, &h.dirty, need))
        Fail(env, "xc_hypercall_buffer_alloc_pages", errno ? errno : ENOMEM, std::to_string(need) + " pages");
      h.dirtyPages = need;
    }
    xc_shadow_op_stats_t stats;
    memset(&stats, 0, sizeof stats);
    errno = 0;
    long long rc = xc_logdirty_control(h.xch, domid, op, &h.dirty, pages, mode, &stats);
    if (rc < 0) Fail(env, "xc_logdirty_control", errno, Dom(domid) + ", op " + std::to_string(op));
    if (static_cast<uint64_t>(rc) != pages)
      Fail(env, "xc_logdirty_control", EIO,
           "returned " + std::to_string(rc) + " of " + std::to_string(pages) + " pages");
    memcpy(bitmap.first, h.dirty.hbuf, bytes);
    Napi::Array r = Napi::Array::New(env, 2);
    r.Set(0u, Napi::Number::New(env, stats.fault_count));
    r.Set(1u, Napi::Number::New(env, stats.dirty_count));
    return r;
  }

  // map(domid, frames: BigUint64Array, prot: PROT_* bits) -> native Mapping. Per-page errors stay
  // in the mapping's `errors` (positive errno); a failed page is replaced by an anonymous zero page
  // so touching it cannot fault (privcmd leaves a hole that raises SIGBUS).
  Napi::Value Map(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    auto frames = ArgU64Array(info, 1, "frames");
    int prot = ArgI32(info, 2, "prot");
    if (frames.second == 0) throw Napi::RangeError::New(env, "frames must not be empty");
    auto &h = H(env, "xenforeignmemory_map");
    XENMIG_REQUIRE(env, xenforeignmemory_map);
    size_t n = frames.second;
    std::vector<int> err(n, 0);
    static_assert(sizeof(xen_pfn_t) == sizeof(uint64_t), "xen_pfn_t is 64-bit");
    errno = 0;
    void *addr = xenforeignmemory_map(h.fmem, domid, prot, n, reinterpret_cast<const xen_pfn_t *>(frames.first),
                                      err.data());
    if (!addr) Fail(env, "xenforeignmemory_map", errno, Dom(domid) + ", " + std::to_string(n) + " frames");
    Napi::Object m = NewMapping(env, h_, RegionKind::Foreign, addr, n, n * kPage, n * kPage);
    Napi::Int32Array errors = Napi::Int32Array::New(env, n);
    for (size_t i = 0; i < n; i++) {
      int e = err[i] < 0 ? -err[i] : err[i];
      errors[i] = e;
      if (e) {
        void *p = static_cast<uint8_t *>(addr) + i * kPage;
        mmap(p, kPage, (prot & PROT_WRITE) ? PROT_READ | PROT_WRITE : PROT_READ,
             MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      }
    }
    m.Set("errors", errors);
    return m;
  }

  // pfnTypes(domid, frames): in place, frames -> XEN_DOMCTL_PFINFO_* (bits 31-28).
  Napi::Value PfnTypes(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    auto frames = ArgU64Array(info, 1, "frames");
    auto &h = H(env, "xc_get_pfn_type_batch");
    XENMIG_REQUIRE(env, xc_get_pfn_type_batch);
    errno = 0;
    if (xc_get_pfn_type_batch(h.xch, domid, frames.second, reinterpret_cast<xen_pfn_t *>(frames.first)) < 0)
      Fail(env, "xc_get_pfn_type_batch", errno, Dom(domid));
    return env.Undefined();
  }

  // populatePhysmap(domid, gfns): order-0 extents; PV: gfns replaced by the allocated mfns.
  Napi::Value PopulatePhysmap(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    auto gfns = ArgU64Array(info, 1, "gfns");
    auto &h = H(env, "xc_domain_populate_physmap_exact");
    XENMIG_REQUIRE(env, xc_domain_populate_physmap_exact);
    errno = 0;
    if (xc_domain_populate_physmap_exact(h.xch, domid, gfns.second, 0, 0, reinterpret_cast<xen_pfn_t *>(gfns.first)) < 0)
      Fail(env, "xc_domain_populate_physmap_exact", errno, Dom(domid) + ", " + std::to_string(gfns.second) + " extents");
    return env.Undefined();
  }

  // pinTables(domid, mfns, levels): one xc_mmuext_op with MMUEXT_PIN_L<level>_TABLE per frame.
  Napi::Value PinTables(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    auto mfns = ArgU64Array(info, 1, "mfns");
    auto levels = ArgBytes(info, 2, "levels");
    if (levels.second != mfns.second) throw Napi::RangeError::New(env, "mfns and levels differ in length");
    std::vector<struct mmuext_op> ops(mfns.second);
    for (size_t i = 0; i < mfns.second; i++) {
      uint8_t lv = levels.first[i];
      if (lv < 1 || lv > 4) throw Napi::RangeError::New(env, "levels must be 1..4");
      memset(&ops[i], 0, sizeof ops[i]);
      ops[i].cmd = MMUEXT_PIN_L1_TABLE + (lv - 1);
      ops[i].arg1.mfn = mfns.first[i];
    }
    auto &h = H(env, "xc_mmuext_op");
    XENMIG_REQUIRE(env, xc_mmuext_op);
    errno = 0;
    if (xc_mmuext_op(h.xch, ops.data(), ops.size(), domid) < 0)
      Fail(env, "xc_mmuext_op", errno, Dom(domid) + ", " + std::to_string(ops.size()) + " pins");
    return env.Undefined();
  }

  // mapM2p() -> native Mapping over the read-only M2P (maxMfn entries), with `maxMfn` set.
  Napi::Value MapM2p(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto &h = H(env, "xc_map_m2p");
    XENMIG_REQUIRE(env, xc_maximum_ram_page);
    XENMIG_REQUIRE(env, xc_map_m2p);
    unsigned long maxMfn = 0;
    errno = 0;
    if (xc_maximum_ram_page(h.xch, &maxMfn) < 0) Fail(env, "xc_maximum_ram_page", errno);
    errno = 0;
    xen_pfn_t *m2p = xc_map_m2p(h.xch, maxMfn, PROT_READ, nullptr);
    if (!m2p) Fail(env, "xc_map_m2p", errno, "max mfn " + std::to_string(maxMfn));
    // libxc maps the M2P in 2 MiB chunks: ROUNDUP(max_mfn * sizeof(xen_pfn_t), 21).
    const size_t chunk = size_t(1) << 21;
    size_t mapped = (maxMfn * sizeof(xen_pfn_t) + chunk - 1) & ~(chunk - 1);
    // Xen reports max_page (a count) and the mock the highest mfn: show maxMfn + 1 entries when
    // the 2 MiB rounding maps them, so both read every frame's entry.
    size_t bytes = std::min<size_t>((maxMfn + 1) * sizeof(xen_pfn_t), mapped);
    Napi::Object m = NewMapping(env, h_, RegionKind::Munmap, m2p, mapped / kPage, mapped, bytes);
    m.Set("maxMfn", Napi::Number::New(env, static_cast<double>(maxMfn)));
    return m;
  }

  // ---- vCPU and HVM context records ---------------------------------------------------------
  // Each record is read by <name>Get(domid[, vcpu]) -> Buffer and written by
  // <name>Set(domid[, vcpu], bytes). RecordGet / RecordSet hold the frame they share (arguments,
  // set's size check, the handle); a record type R says what differs:
  //   kVcpu           the second argument is a vCPU id (false: the HVM context, per domain)
  //   kGetFn, kSetFn  the libxen function H() is opened for (the `syscall` of EBADF after close())
  //   kArg            the JS name of set's bytes argument
  //   Check(env, n)   set's size check, before libxen is touched (throws RangeError)
  //   Get / Set       the XENMIG_REQUIREs and libxen calls, failing through self.Fail()
  template <typename R>
  Napi::Value RecordGet(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    uint32_t vcpu = R::kVcpu ? ArgU32(info, 1, "vcpu") : 0;
    auto &h = H(env, R::kGetFn);
    return R::Get(*this, env, h, domid, vcpu);
  }

  template <typename R>
  Napi::Value RecordSet(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    uint32_t vcpu = R::kVcpu ? ArgU32(info, 1, "vcpu") : 0;
    auto bytes = ArgBytes(info, R::kVcpu ? 2 : 1, R::kArg);
    R::Check(env, bytes.second);
    auto &h = H(env, R::kSetFn);
    R::Set(*this, env, h, domid, vcpu, bytes);
    return env.Undefined();
  }

  using Bytes = std::pair<uint8_t *, size_t>;

  // Error detail of a per-vCPU call: "domid D, vcpu V".
  static std::string Vcpu(uint32_t domid, uint32_t vcpu) { return Dom(domid) + ", vcpu " + std::to_string(vcpu); }

  // A per-vCPU domctl R::kGet / R::kSet on the union member R::Of(d), zeroed but for the header.
  template <typename R>
  static void VcpuDomctl(xen_domctl &d, uint32_t cmd, uint32_t domid, uint32_t vcpu) {
    memset(&d, 0, sizeof d);
    d.cmd = cmd;
    d.domain = domid;
    R::Of(d).vcpu = vcpu;
  }

  // Sends d; a failure is xc_domctl's error with `what` (the operation) before the vCPU.
  void Domctl(Napi::Env env, XenHandles &h, xen_domctl &d, const char *what, uint32_t domid, uint32_t vcpu) {
    errno = 0;
    if (xc_domctl(h.xch, &d) < 0) Fail(env, "xc_domctl", errno, std::string(what) + ", " + Vcpu(domid, vcpu));
  }

  // A hypercall-safe buffer released on scope exit.
  struct HBuf {
    xc_interface *xch;
    xc_hypercall_buffer_t b{};
    HBuf(xc_interface *x) : xch(x) { b.ubuf = reinterpret_cast<void *>(-1); }
    void *Alloc(size_t size) { return xc__hypercall_buffer_alloc(xch, &b, size); }
    ~HBuf() {
      if (b.hbuf) xc__hypercall_buffer_free(xch, &b);
    }
  };

  void *Alloc(Napi::Env env, HBuf &buf, size_t size) {
    errno = 0;
    void *p = buf.Alloc(size);
    if (!p) Fail(env, "xc_hypercall_buffer_alloc", errno ? errno : ENOMEM);
    return p;
  }

  // Records without a size limit on set.
  struct Unchecked {
    static void Check(Napi::Env, size_t) {}
  };

  // Basic context: xc_vcpu_get/setcontext on a whole vcpu_guest_context_any_t (a shorter set is
  // zero-padded).
  struct VcpuContext {
    static constexpr bool kVcpu = true;
    static constexpr const char *kGetFn = "xc_vcpu_getcontext", *kSetFn = "xc_vcpu_setcontext", *kArg = "ctx";
    static void Check(Napi::Env env, size_t n) {
      if (n > sizeof(vcpu_guest_context_any_t)) throw Napi::RangeError::New(env, "vcpu context too large");
    }
    static Napi::Value Get(Interface &self, Napi::Env env, XenHandles &h, uint32_t domid, uint32_t vcpu) {
      XENMIG_REQUIRE(env, xc_vcpu_getcontext);
      auto out = Napi::Buffer<uint8_t>::New(env, sizeof(vcpu_guest_context_any_t));
      memset(out.Data(), 0, out.Length());
      errno = 0;
      if (xc_vcpu_getcontext(h.xch, domid, vcpu, reinterpret_cast<vcpu_guest_context_any_t *>(out.Data())) < 0)
        self.Fail(env, kGetFn, errno, Vcpu(domid, vcpu));
      return out;
    }
    static void Set(Interface &self, Napi::Env env, XenHandles &h, uint32_t domid, uint32_t vcpu, Bytes bytes) {
      XENMIG_REQUIRE(env, xc_vcpu_setcontext);
      vcpu_guest_context_any_t ctx;
      memset(&ctx, 0, sizeof ctx);
      memcpy(&ctx, bytes.first, bytes.second);
      errno = 0;
      if (xc_vcpu_setcontext(h.xch, domid, vcpu, &ctx) < 0) self.Fail(env, kSetFn, errno, Vcpu(domid, vcpu));
    }
  };

  // Extended context: XEN_DOMCTL_get/set_ext_vcpucontext through xc_domctl (as libxenguest does);
  // get returns the `size` bytes Xen fills in.
  struct ExtContext {
    static constexpr bool kVcpu = true;
    static constexpr const char *kGetFn = "xc_domctl", *kSetFn = "xc_domctl", *kArg = "ctx";
    static auto &Of(xen_domctl &d) { return d.u.ext_vcpucontext; }
    static void Check(Napi::Env env, size_t n) {
      if (n > sizeof(struct xen_domctl_ext_vcpucontext)) throw Napi::RangeError::New(env, "extended context too large");
    }
    static Napi::Value Get(Interface &self, Napi::Env env, XenHandles &h, uint32_t domid, uint32_t vcpu) {
      XENMIG_REQUIRE(env, xc_domctl);
      struct xen_domctl d;
      VcpuDomctl<ExtContext>(d, XEN_DOMCTL_get_ext_vcpucontext, domid, vcpu);
      self.Domctl(env, h, d, "get_ext_vcpucontext", domid, vcpu);
      size_t size = std::min<size_t>(Of(d).size, sizeof Of(d));
      return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t *>(&Of(d)), size);
    }
    static void Set(Interface &self, Napi::Env env, XenHandles &h, uint32_t domid, uint32_t vcpu, Bytes bytes) {
      XENMIG_REQUIRE(env, xc_domctl);
      struct xen_domctl d;
      VcpuDomctl<ExtContext>(d, XEN_DOMCTL_set_ext_vcpucontext, domid, vcpu);
      memcpy(&Of(d), bytes.first, bytes.second);
      Of(d).vcpu = vcpu;  // the header wins over the copied bytes
      Of(d).size = bytes.second;
      self.Domctl(env, h, d, "set_ext_vcpucontext", domid, vcpu);
    }
  };

  // XSAVE state and MSRs: a count query (null buffer), then a fetch into a hypercall buffer of
  // count * kEntry bytes, cut to the count Xen reports then; empty when there is nothing to fetch.
  // A set sends a copy of the bytes (whole entries) in one call. R gives the commands, the union
  // member (Of), its count field (Count), what to fetch (Available), the buffer handle (Attach),
  // the operation names of the errors, and whether the fetch starts from a zeroed domctl
  // (kFreshFetch) or from the query's answer (XSAVE: Xen checks xfeature_mask against it).
  template <typename R>
  struct TwoCall : Unchecked {
    static constexpr bool kVcpu = true;
    static constexpr const char *kGetFn = "xc_domctl", *kSetFn = "xc_domctl", *kArg = R::kArg;
    static Napi::Value Get(Interface &self, Napi::Env env, XenHandles &h, uint32_t domid, uint32_t vcpu) {
      XENMIG_REQUIRE(env, xc_domctl);
      XENMIG_REQUIRE(env, xc__hypercall_buffer_alloc);
      XENMIG_REQUIRE(env, xc__hypercall_buffer_free);
      struct xen_domctl d;
      VcpuDomctl<R>(d, R::kGet, domid, vcpu);
      self.Domctl(env, h, d, R::kQueryOp, domid, vcpu);
      uint64_t count = R::Available(d);
      if (!count) return Napi::Buffer<uint8_t>::New(env, 0);
      HBuf buf(h.xch);
      void *p = self.Alloc(env, buf, count * R::kEntry);
      if constexpr (R::kFreshFetch) memset(&d, 0, sizeof d);
      d.cmd = R::kGet;
      d.domain = domid;
      R::Of(d).vcpu = vcpu;
      R::Count(d) = count;
      R::Attach(d, p);
      self.Domctl(env, h, d, R::kGetOp, domid, vcpu);
      if (R::Count(d) < count) count = R::Count(d);
      return Napi::Buffer<uint8_t>::Copy(env, static_cast<uint8_t *>(p), count * R::kEntry);
    }
    static void Set(Interface &self, Napi::Env env, XenHandles &h, uint32_t domid, uint32_t vcpu, Bytes bytes) {
      XENMIG_REQUIRE(env, xc_domctl);
      XENMIG_REQUIRE(env, xc__hypercall_buffer_alloc);
      XENMIG_REQUIRE(env, xc__hypercall_buffer_free);
      HBuf buf(h.xch);
      void *p = self.Alloc(env, buf, bytes.second ? bytes.second : 1);
      memcpy(p, bytes.first, bytes.second);
      struct xen_domctl d;
      VcpuDomctl<R>(d, R::kSet, domid, vcpu);
      R::Count(d) = bytes.second / R::kEntry;
      R::Attach(d, p);
      self.Domctl(env, h, d, R::kSetOp, domid, vcpu);
    }
  };

  // XSAVE state: XEN_DOMCTL_get/setvcpuextstate, counted in bytes; none without an xfeature_mask.
  struct XsaveOps {
    static constexpr uint32_t kGet = XEN_DOMCTL_getvcpuextstate, kSet = XEN_DOMCTL_setvcpuextstate;
    static constexpr size_t kEntry = 1;
    static constexpr bool kFreshFetch = false;
    static constexpr const char *kArg = "xsave", *kQueryOp = "getvcpuextstate size", *kGetOp = "getvcpuextstate",
                                *kSetOp = "setvcpuextstate";
    static auto &Of(xen_domctl &d) { return d.u.vcpuextstate; }
    static auto &Count(xen_domctl &d) { return d.u.vcpuextstate.size; }
    static uint64_t Available(xen_domctl &d) { return d.u.vcpuextstate.xfeature_mask ? d.u.vcpuextstate.size : 0; }
    static void Attach(xen_domctl &d, void *p) {
      set_xen_guest_handle_raw(d.u.vcpuextstate.buffer, static_cast<uint64_t *>(p));
    }
  };
  using Xsave = TwoCall<XsaveOps>;

  // MSRs: XEN_DOMCTL_get/set_vcpu_msrs, counted in xen_domctl_vcpu_msr_t entries (16 bytes).
  struct MsrsOps {
    static constexpr uint32_t kGet = XEN_DOMCTL_get_vcpu_msrs, kSet = XEN_DOMCTL_set_vcpu_msrs;
    static constexpr size_t kEntry = sizeof(xen_domctl_vcpu_msr_t);
    static constexpr bool kFreshFetch = true;
    static constexpr const char *kArg = "msrs", *kQueryOp = "get_vcpu_msrs count", *kGetOp = "get_vcpu_msrs",
                                *kSetOp = "set_vcpu_msrs";
    static auto &Of(xen_domctl &d) { return d.u.vcpu_msrs; }
    static auto &Count(xen_domctl &d) { return d.u.vcpu_msrs.msr_count; }
    static uint64_t Available(xen_domctl &d) { return d.u.vcpu_msrs.msr_count; }
    static void Attach(xen_domctl &d, void *p) {
      set_xen_guest_handle_raw(d.u.vcpu_msrs.msrs, static_cast<xen_domctl_vcpu_msr_t *>(p));
    }
  };
  struct Msrs : TwoCall<MsrsOps> {
    static void Check(Napi::Env env, size_t n) {
      if (n % MsrsOps::kEntry) throw Napi::RangeError::New(env, "msrs must be a whole number of 16-byte entries");
    }
  };

  // HVM context (per domain): xc_domain_hvm_getcontext size query then fetch; set sends a copy.
  struct HvmContext : Unchecked {
    static constexpr bool kVcpu = false;
    static constexpr const char *kGetFn = "xc_domain_hvm_getcontext", *kSetFn = "xc_domain_hvm_setcontext",
                                *kArg = "ctx";
    static Napi::Value Get(Interface &self, Napi::Env env, XenHandles &h, uint32_t domid, uint32_t) {
      XENMIG_REQUIRE(env, xc_domain_hvm_getcontext);
      errno = 0;
      int size = xc_domain_hvm_getcontext(h.xch, domid, nullptr, 0);
      if (size < 0) self.Fail(env, kGetFn, errno, Dom(domid) + ", size query");
      std::vector<uint8_t> buf(size > 0 ? size : 1);
      errno = 0;
      int len = xc_domain_hvm_getcontext(h.xch, domid, buf.data(), size);
      if (len < 0) self.Fail(env, kGetFn, errno, Dom(domid));
      if (len > size) len = size;
      return Napi::Buffer<uint8_t>::Copy(env, buf.data(), len);
    }
    static void Set(Interface &self, Napi::Env env, XenHandles &h, uint32_t domid, uint32_t, Bytes bytes) {
      XENMIG_REQUIRE(env, xc_domain_hvm_setcontext);
      std::vector<uint8_t> buf(bytes.first, bytes.first + bytes.second);
      errno = 0;
      if (xc_domain_hvm_setcontext(h.xch, domid, buf.data(), buf.size()) < 0) self.Fail(env, kSetFn, errno, Dom(domid));
    }
  };

  Napi::Value VcpuOnline(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    uint32_t vcpu = ArgU32(info, 1, "vcpu");
    auto &h = H(env, "xc_vcpu_getinfo");
    XENMIG_REQUIRE(env, xc_vcpu_getinfo);
    xc_vcpuinfo_t vi;
    memset(&vi, 0, sizeof vi);
    errno = 0;
    if (xc_vcpu_getinfo(h.xch, domid, vcpu, &vi) < 0)
      Fail(env, "xc_vcpu_getinfo", errno, Dom(domid) + ", vcpu " + std::to_string(vcpu));
    return Napi::Boolean::New(env, vi.online);
  }

  Napi::Value HvmParamGet(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    uint32_t index = ArgU32(info, 1, "index");
    auto &h = H(env, "xc_hvm_param_get");
    XENMIG_REQUIRE(env, xc_hvm_param_get);
    uint64_t v = 0;
    errno = 0;
    if (xc_hvm_param_get(h.xch, domid, index, &v) < 0)
      Fail(env, "xc_hvm_param_get", errno, Dom(domid) + ", param " + std::to_string(index));
    return Napi::BigInt::New(env, v);
  }

  Napi::Value HvmParamSet(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    uint32_t index = ArgU32(info, 1, "index");
    uint64_t value = ArgU64(info, 2, "value");
    auto &h = H(env, "xc_hvm_param_set");
    XENMIG_REQUIRE(env, xc_hvm_param_set);
    errno = 0;
    if (xc_hvm_param_set(h.xch, domid, index, value) < 0)
      Fail(env, "xc_hvm_param_set", errno, Dom(domid) + ", param " + std::to_string(index));
    return env.Undefined();
  }

  Napi::Value TscInfoGet(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    auto &h = H(env, "xc_domain_get_tsc_info");
    XENMIG_REQUIRE(env, xc_domain_get_tsc_info);
    uint32_t mode = 0, khz = 0, inc = 0;
    uint64_t ns = 0;
    errno = 0;
    if (xc_domain_get_tsc_info(h.xch, domid, &mode, &ns, &khz, &inc) < 0)
      Fail(env, "xc_domain_get_tsc_info", errno, Dom(domid));
    Napi::Object o = Napi::Object::New(env);
    o.Set("mode", Napi::Number::New(env, mode));
    o.Set("elapsedNsec", Napi::BigInt::New(env, ns));
    o.Set("gtscKhz", Napi::Number::New(env, khz));
    o.Set("incarnation", Napi::Number::New(env, inc));
    return o;
  }

  Napi::Value TscInfoSet(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    uint32_t mode = ArgU32(info, 1, "mode");
    uint64_t ns = ArgU64(info, 2, "elapsedNsec");
    uint32_t khz = ArgU32(info, 3, "gtscKhz");
    uint32_t inc = ArgU32(info, 4, "incarnation");
    auto &h = H(env, "xc_domain_set_tsc_info");
    XENMIG_REQUIRE(env, xc_domain_set_tsc_info);
    errno = 0;
    if (xc_domain_set_tsc_info(h.xch, domid, mode, ns, khz, inc) < 0)
      Fail(env, "xc_domain_set_tsc_info", errno, Dom(domid));
    return env.Undefined();
  }

  // cpuPolicyGet(domid) -> [cpuidBytes, msrBytes] (xen_cpuid_leaf_t[] / xen_msr_entry_t[]).
  Napi::Value CpuPolicyGet(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    auto &h = H(env, "xc_cpu_policy_get_domain");
    XENMIG_REQUIRE(env, xc_cpu_policy_init);
    XENMIG_REQUIRE(env, xc_cpu_policy_destroy);
    XENMIG_REQUIRE(env, xc_cpu_policy_get_domain);
    XENMIG_REQUIRE(env, xc_cpu_policy_get_size);
    XENMIG_REQUIRE(env, xc_cpu_policy_serialise);
    std::unique_ptr<xc_cpu_policy_t, void (*)(xc_cpu_policy_t *)> pol(xc_cpu_policy_init(), xc_cpu_policy_destroy);
    if (!pol) Fail(env, "xc_cpu_policy_init", errno ? errno : ENOMEM);
    errno = 0;
    if (xc_cpu_policy_get_domain(h.xch, domid, pol.get()) < 0) Fail(env, "xc_cpu_policy_get_domain", errno, Dom(domid));
    uint32_t nl = 0, nm = 0;
    errno = 0;
    if (xc_cpu_policy_get_size(h.xch, &nl, &nm) < 0) Fail(env, "xc_cpu_policy_get_size", errno);
    std::vector<xen_cpuid_leaf_t> leaves(nl ? nl : 1);
    std::vector<xen_msr_entry_t> msrs(nm ? nm : 1);
    errno = 0;
    if (xc_cpu_policy_serialise(h.xch, pol.get(), leaves.data(), &nl, msrs.data(), &nm) < 0)
      Fail(env, "xc_cpu_policy_serialise", errno, Dom(domid));
    Napi::Array r = Napi::Array::New(env, 2);
    r.Set(0u, Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t *>(leaves.data()), nl * sizeof(xen_cpuid_leaf_t)));
    r.Set(1u, Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t *>(msrs.data()), nm * sizeof(xen_msr_entry_t)));
    return r;
  }

  Napi::Value CpuPolicySet(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    uint32_t domid = ArgU32(info, 0, "domid");
    auto cpuid = ArgBytes(info, 1, "cpuid");
    auto msrb = ArgBytes(info, 2, "msrs");
    if (cpuid.second % sizeof(xen_cpuid_leaf_t) || msrb.second % sizeof(xen_msr_entry_t))
      throw Napi::RangeError::New(env, "cpuid/msrs are not whole numbers of entries");
    auto &h = H(env, "xc_set_domain_cpu_policy");
    XENMIG_REQUIRE(env, xc_set_domain_cpu_policy);
    uint32_t nl = cpuid.second / sizeof(xen_cpuid_leaf_t), nm = msrb.second / sizeof(xen_msr_entry_t);
    std::vector<xen_cpuid_leaf_t> leaves(nl + 1);
    std::vector<xen_msr_entry_t> msrs(nm + 1);
    if (cpuid.second) memcpy(leaves.data(), cpuid.first, cpuid.second);
    if (msrb.second) memcpy(msrs.data(), msrb.first, msrb.second);
    uint32_t el = ~0u, es = ~0u, em = ~0u;
    errno = 0;
    if (xc_set_domain_cpu_policy(h.xch, domid, nl, nl ? leaves.data() : nullptr, nm, nm ? msrs.data() : nullptr, &el,
                                 &es, &em) < 0) {
      int e = errno;
      char detail[128];
      snprintf(detail, sizeof detail, "%s, leaf 0x%08x subleaf 0x%08x msr 0x%08x", Dom(domid).c_str(), el, es, em);
      Fail(env, "xc_set_domain_cpu_policy", e, detail);
    }
    return env.Undefined();
  }
};

}  // namespace

Napi::Object InitInterface(Napi::Env env, Napi::Object exports, AddonData *data) {
  Napi::Function ctor = Interface::Define(env);
  data->interfaceCtor = Napi::Persistent(ctor);
  exports.Set("Interface", ctor);
  return exports;
}

}  // namespace xenmig
