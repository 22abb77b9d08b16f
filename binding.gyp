{
    # One target, strict flags, built from source on install (spec 08 section 2 rule 2).
    'target_defaults': {
        'include_dirs': [
            "<!(node -p \"require('node-addon-api').include_dir\")",
        ],
        'defines': [
            'NAPI_VERSION=8',
            'NODE_ADDON_API_DISABLE_DEPRECATED',
            'NODE_ADDON_API_CPP_EXCEPTIONS',
            'NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED',
        ],
        'cflags!': ['-fno-exceptions'],
        'cflags_cc!': ['-fno-exceptions', '-std=gnu++17'],
        'cflags_cc': ['-std=c++17', '-fexceptions'],
        'cflags': [
            '-Wall',
            '-Wextra',
            '-Wformat',
            '-Wformat-security',
            '-Werror',
            '-fvisibility=hidden',
            '-fstack-protector-strong',
            '-ffunction-sections',
            '-fdata-sections',
        ],
        'ldflags': [
            '-Wl,--gc-sections',
            '-Wl,-z,relro,-z,now',
            '-Wl,-z,noexecstack',
        ],
        'xcode_settings': {
            'GCC_ENABLE_CPP_EXCEPTIONS': 'YES',
            'GCC_SYMBOLS_PRIVATE_EXTERN': 'YES',
            'CLANG_CXX_LANGUAGE_STANDARD': 'c++17',
            'MACOSX_DEPLOYMENT_TARGET': '11.0',
            'OTHER_CPLUSPLUSFLAGS': ['-Wall', '-Wextra', '-Werror'],
        },
        'msvs_settings': {
            'VCCLCompilerTool': {'ExceptionHandling': 1},
        },
        'configurations': {
            'Release': {
                # _FORTIFY_SOURCE needs optimisation, so Release only. -U first: some toolchains
                # (Ubuntu's gcc) predefine it, and a silent redefinition is an error under -Werror.
                'cflags': ['-U_FORTIFY_SOURCE', '-D_FORTIFY_SOURCE=2'],
            },
            'Debug': {
                'cflags': ['--coverage'],
                'ldflags': ['--coverage'],
            },
        },
    },
    'variables': {
        # 1 when libsecp256k1 with its recovery module links (D14); DSTACK_KMS_SECP256K1=0|1
        # overrides the probe. Without it the addon builds without secp256k1 and the KMS signs
        # with @noble/curves, so `npm ci` never fails for a missing libsecp256k1-dev.
        'dstack_kms_secp256k1%': '<!(node scripts/detect-secp256k1.mjs)',
    },
    'targets': [
        {
            'target_name': 'dstack_kms_native',
            'sources': ['native/addon.cc'],
            'conditions': [
                ['OS=="linux"', {
                    'sources': ['native/flock.cc', 'native/unix_dgram.cc', 'native/tdx_guest.cc', 'native/vsock.cc'],
                }, {
                    'sources': ['native/stub.cc'],
                }],
                ['OS=="linux" and dstack_kms_secp256k1==1', {
                    'sources': ['native/secp256k1.cc'],
                    'defines': ['DSTACK_KMS_HAVE_SECP256K1'],
                    'libraries': ['-lsecp256k1'],
                }],
            ],
        },
    ],
}
