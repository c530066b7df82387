// Generic netlink sockets for network output buffering (src/netbuf/): open a socket of a netlink
// protocol (NETLINK_ROUTE, NETLINK_NETFILTER), send a message TypeScript built, and collect what the
// kernel has queued in reply. No message is built or parsed here: TypeScript owns every byte.
// Independent of Xen: compiled into both flavours.
//
// The kernel handles a netlink request synchronously inside sendmsg() for these protocols, so the
// replies (ACK, error, dump chunks) are queued by the time it returns; request() then reads them
// without blocking until the socket is empty or `out` is full.
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "common.h"

namespace xenmig {

namespace {

// open(protocol, rcvbufBytes) -> fd. rcvbufBytes 0 = the default receive buffer.
Napi::Value Open(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int protocol = static_cast<int>(ArgU32(info, 0, "protocol"));
  int rcvbuf = static_cast<int>(ArgU32(info, 1, "rcvbuf"));
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd < 0) ThrowXen(env, "socket", errno, "AF_NETLINK");
  sockaddr_nl sa;
  std::memset(&sa, 0, sizeof sa);
  sa.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) != 0) {
    int e = errno;
    close(fd);
    ThrowXen(env, "bind", e, "AF_NETLINK");
  }
  if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0 &&
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0) {
    int e = errno;
    close(fd);
    ThrowXen(env, "setsockopt", e, "SO_RCVBUF");
  }
  int one = 1;
  // extended ACKs carry the kernel's error text; not every kernel has them (ignore a refusal)
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  return Napi::Number::New(env, fd);
}

// Reads what is queued on fd into out (without blocking), one datagram after the other, until the
// socket is empty or less room is left than the largest datagram (a dump chunk is at most 32 KiB).
// Returns the bytes stored. A datagram cut short is EMSGSIZE (never a silently truncated message).
constexpr size_t kMaxDatagram = 32768;

size_t Drain(Napi::Env env, int fd, uint8_t *out, size_t cap) {
  size_t used = 0;
  while (cap - used >= kMaxDatagram) {
    ssize_t n = recv(fd, out + used, cap - used, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      ThrowXen(env, "recv", errno, "netlink");
    }
    if (n == 0) break;
    if (static_cast<size_t>(n) > cap - used) ThrowXen(env, "recv", EMSGSIZE, "netlink datagram larger than the buffer");
    used += static_cast<size_t>(n);
  }
  return used;
}

// request(fd, message, out) -> bytes of replies stored in out (0 when out is empty: send only).
Napi::Value Request(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgI32(info, 0, "fd");
  auto msg = ArgBytes(info, 1, "message");
  auto out = ArgBytes(info, 2, "out");
  sockaddr_nl kernel;
  std::memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  for (;;) {
    ssize_t n = sendto(fd, msg.first, msg.second, 0, reinterpret_cast<sockaddr *>(&kernel), sizeof kernel);
    if (n >= 0) break;
    if (errno != EINTR) ThrowXen(env, "sendto", errno, "netlink");
  }
  if (out.second == 0) return Napi::Number::New(env, 0);
  return Napi::Number::New(env, static_cast<double>(Drain(env, fd, out.first, out.second)));
}

// recv(fd, out) -> bytes stored: what is queued (notifications), without blocking.
Napi::Value Recv(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgI32(info, 0, "fd");
  auto out = ArgBytes(info, 1, "out");
  return Napi::Number::New(env, static_cast<double>(Drain(env, fd, out.first, out.second)));
}

Napi::Value Close(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ArgI32(info, 0, "fd");
  if (close(fd) != 0 && errno != EINTR) ThrowXen(env, "close", errno, "netlink");
  return env.Undefined();
}

}  // namespace

Napi::Object InitNetlink(Napi::Env env, Napi::Object exports) {
  Napi::Object n = Napi::Object::New(env);
  n.Set("open", Napi::Function::New<Open>(env, "open"));
  n.Set("request", Napi::Function::New<Request>(env, "request"));
  n.Set("recv", Napi::Function::New<Recv>(env, "recv"));
  n.Set("close", Napi::Function::New<Close>(env, "close"));
  exports.Set("netlink", n);
  return exports;
}

}  // namespace xenmig
