# xenmig native addon, two flavours of one source set (native/src):
#   xenctrl_mock       shared library: the mock libxenctrl built from docker/mock/src/*.c
#   xenmig_mock.node   the addon linked to it (rpath $ORIGIN), with the mock host's control API
#   xenmig_system.node the addon linked to the installed libxen-dev; only when pkg-config finds it
# Probes (native/probe.mjs) run at configure time: pkg-config, xc_domain_getinfo_single (Xen >= 4.18).
{
  "variables": {
    "xen_system%": "<!(node native/probe.mjs system)",
    "xen_getinfo_single%": "<!(node native/probe.mjs getinfo-single)",
    "xen_mock%": "<!(node native/probe.mjs has-mock)",
    "addon_sources": [
      "native/src/addon.cc",
      "native/src/builder.cc",
      "native/src/common.cc",
      "native/src/interface.cc",
      "native/src/mapping.cc",
      "native/src/mock.cc",
      "native/src/netlink.cc"
    ]
  },
  "target_defaults": {
    "include_dirs": ["<!(node native/probe.mjs addon-api)"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
    "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
    "cflags_cc": ["-fexceptions", "-frtti"]
  },
  "conditions": [
    ["xen_mock==1", {
      "targets": [
        {
          "target_name": "xenctrl_mock",
          "type": "shared_library",
          "product_name": "xenctrl_mock",
          "sources": ["<!@(node native/probe.mjs mock-sources)"],
          "include_dirs": ["docker/mock/include"],
          "cflags": ["-fPIC", "-fvisibility=default", "-O2", "-pthread"],
          "cflags!": ["-fvisibility=hidden"],
          "ldflags": ["-pthread"],
          "libraries": ["-lpthread"]
        },
        {
          "target_name": "xenmig_mock",
          "dependencies": ["xenctrl_mock"],
          "sources": ["<@(addon_sources)"],
          "include_dirs": ["docker/mock/include"],
          "defines": ["XENMIG_MOCK=1"],
          "ldflags": ["-Wl,--no-as-needed", "-Wl,-rpath,'$$ORIGIN:$$ORIGIN/lib.target'"]
        }
      ]
    }],
    ["xen_system==1", {
      "targets": [
        {
          "target_name": "xenmig_system",
          "sources": ["<@(addon_sources)"],
          "cflags": ["<!@(node native/probe.mjs cflags)"],
          "libraries": ["<!@(node native/probe.mjs libs)"],
          "conditions": [
            ["xen_getinfo_single==1", { "defines": ["HAVE_XC_DOMAIN_GETINFO_SINGLE=1"] }]
          ]
        }
      ]
    }],
    ["xen_mock!=1 and xen_system!=1", {
      "targets": [
        { "target_name": "xenmig_none", "type": "none" }
      ]
    }]
  ]
}
