// xenmig native addon: module init. One source set, two flavours (see binding.gyp):
//   xenmig_system.node  against the installed libxenctrl (Debian libxen-dev)
//   xenmig_mock.node    against docker/mock's libxenctrl, plus the mock host's control API
#include "common.h"

namespace xenmig {

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto *data = new AddonData();
  env.SetInstanceData(data);
#ifdef XENMIG_MOCK
  exports.Set("flavour", Napi::String::New(env, "mock"));
#else
  exports.Set("flavour", Napi::String::New(env, "system"));
#endif
  Napi::Object sizes = Napi::Object::New(env);
  sizes.Set("vcpuContext", Napi::Number::New(env, sizeof(vcpu_guest_context_any_t)));
  sizes.Set("vcpuContextX64", Napi::Number::New(env, sizeof(vcpu_guest_context_x86_64_t)));
  sizes.Set("vcpuContextX32", Napi::Number::New(env, sizeof(vcpu_guest_context_x86_32_t)));
  sizes.Set("extVcpuContext", Napi::Number::New(env, sizeof(struct xen_domctl_ext_vcpucontext)));
  sizes.Set("vcpuMsr", Napi::Number::New(env, sizeof(xen_domctl_vcpu_msr_t)));
  sizes.Set("cpuidLeaf", Napi::Number::New(env, sizeof(xen_cpuid_leaf_t)));
  sizes.Set("msrEntry", Napi::Number::New(env, sizeof(xen_msr_entry_t)));
  exports.Set("sizes", sizes);
  Napi::Object hdr = Napi::Object::New(env);
  hdr.Set("domctlInterfaceVersion", Napi::Number::New(env, XEN_DOMCTL_INTERFACE_VERSION));
#ifdef HAVE_XC_DOMAIN_GETINFO_SINGLE
  hdr.Set("getinfoSingle", Napi::Boolean::New(env, true));
#else
  hdr.Set("getinfoSingle", Napi::Boolean::New(env, false));
#endif
  exports.Set("build", hdr);
  exports.Set("lockFile", Napi::Function::New(env, LockFile, "lockFile"));
  exports.Set("setPipeSize", Napi::Function::New(env, SetPipeSize, "setPipeSize"));
  InitInterface(env, exports, data);
  InitMapping(env, exports, data);
  InitBuilder(env, exports);
  InitNetlink(env, exports);
#ifdef XENMIG_MOCK
  InitMock(env, exports);
#endif
  return exports;
}

}  // namespace xenmig

static Napi::Object InitXenmig(Napi::Env env, Napi::Object exports) { return xenmig::Init(env, exports); }

NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitXenmig)
