// The mock flavour's extra exports: the simulated host's control API (xenmig_mock.h).
#ifdef XENMIG_MOCK
#include <cstring>
#include <map>
#include <thread>

#include "common.h"

namespace xenmig {

namespace {

struct StopFlag {
  volatile int stop = 0;
};
std::map<uint32_t, std::shared_ptr<StopFlag>> g_workloads;  // JS thread only
uint32_t g_nextWorkload = 1;

std::string Dom(uint32_t domid) { return "domid " + std::to_string(domid); }

Napi::Value SetHost(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  XENMIG_REQUIRE(env, xenmig_mock_set_host);
  std::string dir;
  bool null = info.Length() < 1 || info[0].IsNull() || info[0].IsUndefined();
  if (!null) {
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "dir must be a string");
    dir = info[0].As<Napi::String>().Utf8Value();
  }
  errno = 0;
  if (xenmig_mock_set_host(null ? nullptr : dir.c_str()) < 0) ThrowXen(env, "xenmig_mock_set_host", errno, dir);
  return env.Undefined();
}

Napi::Value Host(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  XENMIG_REQUIRE(env, xenmig_mock_host);
  return Napi::String::New(env, xenmig_mock_host());
}

Napi::Value DomainCreate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t type = ArgU32(info, 0, "type");
  uint64_t pages = ArgU64(info, 1, "pages");
  uint32_t vcpus = ArgU32(info, 2, "vcpus");
  bool populate = ArgBool(info, 3, "populate");
  XENMIG_REQUIRE(env, xenmig_mock_domain_create);
  uint32_t domid = 0;
  errno = 0;
  if (xenmig_mock_domain_create(type, pages, vcpus, populate ? 1 : 0, &domid) < 0)
    ThrowXen(env, "xenmig_mock_domain_create", errno, std::to_string(pages) + " pages");
  return Napi::Number::New(env, domid);
}

Napi::Value DomainDestroy(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t domid = ArgU32(info, 0, "domid");
  XENMIG_REQUIRE(env, xenmig_mock_domain_destroy);
  errno = 0;
  if (xenmig_mock_domain_destroy(domid) < 0) ThrowXen(env, "xenmig_mock_domain_destroy", errno, Dom(domid));
  return env.Undefined();
}

// A builder's XEN_DOMCTL_max_mem (the mock flavour has no builder calls; one flat call here).
Napi::Value SetMaxMem(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t domid = ArgU32(info, 0, "domid");
  uint64_t kb = ArgU64(info, 1, "maxMemKb");
  errno = 0;
  xc_interface *xch = xc_interface_open(nullptr, nullptr, 0);
  if (!xch) ThrowXen(env, "xc_interface_open", errno ? errno : EACCES);
  int r = xc_domain_setmaxmem(xch, domid, kb);
  int err = errno;
  xc_interface_close(xch);
  if (r != 0) ThrowXen(env, "xc_domain_setmaxmem", err, Dom(domid));
  return env.Undefined();
}

Napi::Value DomainList(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  XENMIG_REQUIRE(env, xenmig_mock_domain_list);
  std::vector<uint32_t> ids(64);
  int n;
  for (;;) {
    errno = 0;
    n = xenmig_mock_domain_list(ids.data(), ids.size());
    if (n < 0) ThrowXen(env, "xenmig_mock_domain_list", errno);
    if (static_cast<size_t>(n) <= ids.size()) break;
    ids.resize(n + 16);
  }
  Napi::Array a = Napi::Array::New(env, n);
  for (int i = 0; i < n; i++) a.Set(i, Napi::Number::New(env, ids[i]));
  return a;
}

Napi::Value GuestWrite(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t domid = ArgU32(info, 0, "domid");
  uint64_t pfn = ArgU64(info, 1, "pfn");
  uint32_t offset = ArgU32(info, 2, "offset");
  auto data = ArgBytes(info, 3, "data");
  XENMIG_REQUIRE(env, xenmig_mock_guest_write);
  errno = 0;
  if (xenmig_mock_guest_write(domid, pfn, offset, data.first, data.second) < 0)
    ThrowXen(env, "xenmig_mock_guest_write", errno, Dom(domid) + ", pfn " + std::to_string(pfn));
  return env.Undefined();
}

Napi::Value Checksum(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t domid = ArgU32(info, 0, "domid");
  XENMIG_REQUIRE(env, xenmig_mock_checksum);
  auto out = Napi::Buffer<uint8_t>::New(env, 32);
  errno = 0;
  if (xenmig_mock_checksum(domid, out.Data()) < 0) ThrowXen(env, "xenmig_mock_checksum", errno, Dom(domid));
  return out;
}

// A workload runs on its own thread, not in libuv's pool: it may run until stopped, and must not
// starve page I/O (four workloads would otherwise occupy the whole default pool).
struct WorkloadJob {
  uint32_t id;
  std::shared_ptr<StopFlag> flag;
  uint32_t domid;
  uint64_t rate, hot, seed, ms;
  long long n = 0;
  int err = 0;
  Napi::Promise::Deferred deferred;
  Napi::ThreadSafeFunction done;
};

void WorkloadDone(Napi::Env env, Napi::Function, WorkloadJob *job) {
  g_workloads.erase(job->id);
  if (env != nullptr) {
    if (job->n < 0)
      job->deferred.Reject(MakeXenError(env, "xenmig_mock_workload", job->err, Dom(job->domid)).Value());
    else
      job->deferred.Resolve(Napi::Number::New(env, static_cast<double>(job->n)));
  }
  delete job;
}

// workloadStart(domid, rate, hot, seed, durationMs) -> [id, Promise<page writes>]
Napi::Value WorkloadStart(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint32_t domid = ArgU32(info, 0, "domid");
  uint64_t rate = ArgU64(info, 1, "rate");
  uint64_t hot = ArgU64(info, 2, "hot");
  uint64_t seed = ArgU64(info, 3, "seed");
  uint64_t ms = ArgU64(info, 4, "durationMs");
  XENMIG_REQUIRE(env, xenmig_mock_workload);
  uint32_t id = g_nextWorkload++;
  auto flag = std::make_shared<StopFlag>();
  auto *job = new WorkloadJob{id, flag, domid, rate, hot, seed, ms, 0, 0, Napi::Promise::Deferred::New(env), {}};
  job->done = Napi::ThreadSafeFunction::New(env, Napi::Function(), "xenmig.mockWorkload", 0, 1);
  g_workloads[id] = flag;
  Napi::Array r = Napi::Array::New(env, 2);
  r.Set(0u, Napi::Number::New(env, id));
  r.Set(1u, job->deferred.Promise());
  std::thread([job] {
    errno = 0;
    job->n = xenmig_mock_workload(job->domid, job->rate, job->hot, job->seed, job->ms, &job->flag->stop);
    if (job->n < 0) job->err = errno;
    Napi::ThreadSafeFunction done = job->done;
    if (done.BlockingCall(job, WorkloadDone) != napi_ok) delete job;  // environment gone
    done.Release();
  }).detach();
  return r;
}

Napi::Value WorkloadStop(const Napi::CallbackInfo &info) {
  uint32_t id = ArgU32(info, 0, "id");
  auto it = g_workloads.find(id);
  if (it != g_workloads.end()) __atomic_store_n(&it->second->stop, 1, __ATOMIC_SEQ_CST);
  return info.Env().Undefined();
}

}  // namespace

Napi::Object InitMock(Napi::Env env, Napi::Object exports) {
  Napi::Object m = Napi::Object::New(env);
  m.Set("setHost", Napi::Function::New(env, SetHost, "setHost"));
  m.Set("host", Napi::Function::New(env, Host, "host"));
  m.Set("domainCreate", Napi::Function::New(env, DomainCreate, "domainCreate"));
  m.Set("domainDestroy", Napi::Function::New(env, DomainDestroy, "domainDestroy"));
  m.Set("domainList", Napi::Function::New(env, DomainList, "domainList"));
  m.Set("setMaxMem", Napi::Function::New(env, SetMaxMem, "setMaxMem"));
  m.Set("guestWrite", Napi::Function::New(env, GuestWrite, "guestWrite"));
  m.Set("checksum", Napi::Function::New(env, Checksum, "checksum"));
  m.Set("workloadStart", Napi::Function::New(env, WorkloadStart, "workloadStart"));
  m.Set("workloadStop", Napi::Function::New(env, WorkloadStop, "workloadStop"));
  m.Set("DOMAIN_PV", Napi::Number::New(env, XENMIG_MOCK_DOMAIN_PV));
  m.Set("DOMAIN_HVM", Napi::Number::New(env, XENMIG_MOCK_DOMAIN_HVM));
  exports.Set("mock", m);
  return exports;
}

}  // namespace xenmig
#endif
