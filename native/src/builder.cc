// Real-host domain builder calls (system flavour only): what a toolstack needs to create the
// empty destination domain of a restore/migration, as libxl does before handing the stream to
// libxc: xc_domain_create, max memory, the PV e820 limit, the xenstore/console event channels, and
// (after the stream) the grant-table seed for the console and xenstore pages.
// Compiled in both flavours; only the system flavour exports `builder`.
// One libxenctrl handle of its own, opened on first use (these calls are rare and never hot).
#include <cstring>

#include "common.h"

namespace xenmig {

#ifndef XENMIG_MOCK
namespace {

xc_interface *gXch = nullptr;

xc_interface *Xch(Napi::Env env, const char *fn) {
  if (!gXch) {
    gXch = xc_interface_open(nullptr, nullptr, 0);
    if (!gXch) ThrowXen(env, "xc_interface_open", errno ? errno : EACCES, fn);
  }
  return gXch;
}

// createDomain(flags, maxVcpus, emulationFlags, handle16, maxGrantFrames, maxMaptrackFrames,
//              grantVersion, maxEvtchnPort) -> domid
Napi::Value CreateDomain(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  struct xen_domctl_createdomain cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.flags = ArgU32(info, 0, "flags");
  cfg.max_vcpus = ArgU32(info, 1, "maxVcpus");
  cfg.arch.emulation_flags = ArgU32(info, 2, "emulationFlags");
  auto handle = ArgBytes(info, 3, "handle");
  if (handle.second != sizeof(cfg.handle)) throw Napi::RangeError::New(env, "handle must be 16 bytes");
  std::memcpy(cfg.handle, handle.first, sizeof(cfg.handle));
  cfg.max_grant_frames = ArgI32(info, 4, "maxGrantFrames");
  cfg.max_maptrack_frames = ArgI32(info, 5, "maxMaptrackFrames");
  cfg.grant_opts = XEN_DOMCTL_GRANT_version(ArgU32(info, 6, "grantVersion"));
  cfg.max_evtchn_port = ArgU32(info, 7, "maxEvtchnPort");
  uint32_t domid = 0;  // 0 = let Xen choose
  xc_interface *xch = Xch(env, "xc_domain_create");
  if (xc_domain_create(xch, &domid, &cfg) != 0) ThrowXen(env, "xc_domain_create", errno);
  return Napi::Number::New(env, domid);
}

// Xen 4.17 still allocates the vCPUs in XEN_DOMCTL_max_vcpus (same count as at creation).
Napi::Value SetMaxVcpus(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t domid = ArgU32(info, 0, "domid");
  uint32_t n = ArgU32(info, 1, "maxVcpus");
  if (xc_domain_max_vcpus(Xch(env, "xc_domain_max_vcpus"), domid, n) != 0) ThrowXen(env, "xc_domain_max_vcpus", errno);
  return env.Undefined();
}

Napi::Value SetMaxMem(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t domid = ArgU32(info, 0, "domid");
  uint64_t kb = ArgU64(info, 1, "maxMemKb");
  if (xc_domain_setmaxmem(Xch(env, "xc_domain_setmaxmem"), domid, kb) != 0) ThrowXen(env, "xc_domain_setmaxmem", errno);
  return env.Undefined();
}

Napi::Value SetMemmapLimit(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t domid = ArgU32(info, 0, "domid");
  uint64_t kb = ArgU64(info, 1, "memKb");
  if (xc_domain_set_memmap_limit(Xch(env, "xc_domain_set_memmap_limit"), domid, kb) != 0)
    ThrowXen(env, "xc_domain_set_memmap_limit", errno);
  return env.Undefined();
}

Napi::Value EvtchnAllocUnbound(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t domid = ArgU32(info, 0, "domid");
  uint32_t remote = ArgU32(info, 1, "remoteDomid");
  int port = xc_evtchn_alloc_unbound(Xch(env, "xc_evtchn_alloc_unbound"), domid, remote);
  if (port < 0) ThrowXen(env, "xc_evtchn_alloc_unbound", errno);
  return Napi::Number::New(env, port);
}

Napi::Value GnttabSeed(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t domid = ArgU32(info, 0, "domid");
  bool hvm = ArgBool(info, 1, "hvm");
  uint64_t consoleGfn = ArgU64(info, 2, "consoleGfn");
  uint64_t storeGfn = ArgU64(info, 3, "storeGfn");
  uint32_t consoleDomid = ArgU32(info, 4, "consoleDomid");
  uint32_t storeDomid = ArgU32(info, 5, "storeDomid");
  if (xc_dom_gnttab_seed(Xch(env, "xc_dom_gnttab_seed"), domid, hvm, consoleGfn, storeGfn, consoleDomid, storeDomid) != 0)
    ThrowXen(env, "xc_dom_gnttab_seed", errno ? errno : EINVAL);
  return env.Undefined();
}

}  // namespace

Napi::Object InitBuilder(Napi::Env env, Napi::Object exports) {
  Napi::Object b = Napi::Object::New(env);
  b.Set("createDomain", Napi::Function::New<CreateDomain>(env, "createDomain"));
  b.Set("setMaxVcpus", Napi::Function::New<SetMaxVcpus>(env, "setMaxVcpus"));
  b.Set("setMaxMem", Napi::Function::New<SetMaxMem>(env, "setMaxMem"));
  b.Set("setMemmapLimit", Napi::Function::New<SetMemmapLimit>(env, "setMemmapLimit"));
  b.Set("evtchnAllocUnbound", Napi::Function::New<EvtchnAllocUnbound>(env, "evtchnAllocUnbound"));
  b.Set("gnttabSeed", Napi::Function::New<GnttabSeed>(env, "gnttabSeed"));
  exports.Set("builder", b);
  return exports;
}
#else
// The mock host builds its domains through its own control API (xenmig_mock.h).
Napi::Object InitBuilder(Napi::Env env, Napi::Object exports) { return exports; }
#endif

}  // namespace xenmig
