# TinyLCM: meta-tensorflow-lite's TFLite C library (XNNPACK on for aarch64) built WITHOUT
# network. The base recipe lets CMake's FetchContent download XNNPACK, cpuinfo, ruy, ... in
# do_configure (do_configure[network] = "1"), which breaks BB_NO_NETWORK builds, source
# mirrors and license manifests. Under the tinylcm distro every such dependency is a pinned
# SRC_URI entry below, CMake is pointed at the unpacked copies and configure runs offline.
# Nothing changes for other distros (every line is gated on the tinylcm override).
#
# Where the revisions come from (and how sure we are): they were read from TensorFlow's own
# pins, tensorflow/lite/tools/cmake/modules/<dep>.cmake (GIT_TAG), and for XNNPACK's own
# dependencies from XNNPACK's cmake/Download<Dep>.cmake, but only at the TensorFlow commits
# our offline source index held, which could NOT be matched to the r2.21 branch
# meta-tensorflow-lite builds (v2.21.0, layer commit f87ee8ea): see the layer README.
# do_configure:prepend below therefore compares every pin with the TensorFlow source
# actually being built and stops the build, naming the revision TensorFlow wants, when they
# differ: update the SRCREV it names and rebuild.
#   dep          pinned revision                            read from (TF / XNNPACK commit)
#   xnnpack      6b83f69d4938da4dc9ad63c00bd13e9695659a51   TF 3f745823 xnnpack.cmake
#   cpuinfo      8ce83db858065145192c97af90cb668ad72a12e9   TF 14f3ab74 cpuinfo.cmake
#   ruy          690c14c441387a4ea6e07a9ed89657cec8200b92   TF 0528e3bf ruy.cmake
#   gemmlowp     fda83bdc38b118cc6b56753bd540caa49e570745   TF 3175de16 gemmlowp.cmake
#   farmhash     816a4ae622e964763ca0862d9dbd19324a1eaf45   TF 0f563557 farmhash.cmake
#   eigen        f02856c6406cd36b5d7f1b98e27d85df5af08d06   TF 08937be2 eigen.cmake
#   ml_dtypes    0fa5313b65efe848c5968a15dd37dd220cc29567   TF 15ab9bcf ml_dtypes.cmake
#   fft2d        OouraFFT v1.0, sha256 5f4dabc2...          TF workspace2.bzl (unchanged for years)
#   pthreadpool  4fe0e1e183925bf8cfa6aae24237e724a96479b8   XNNPACK 4555839d DownloadPThreadPool.cmake
#   fxdiv        b408327ac2a15ec3e43352421954f5b1967701d1   XNNPACK 10a38087 DownloadFXdiv.cmake
#   fp16         3c54eacb74f6f5e39077300c5564156c424d77ba   XNNPACK 0952f414 DownloadFP16.cmake
# Abseil, protobuf and flatbuffers come from the base recipe's DEPENDS (system copies).
# KleidiAI is switched off: its kernels need Armv8.2+ dot-product/i8mm/SME, which neither the
# Zero 2 W (Cortex-A53) nor the CM4 (Cortex-A72) has, so it would be one more download for
# no gain.

TINYLCM_TFLITE_DEPS:tinylcm = "${UNPACKDIR}/tflite-deps"
TINYLCM_GITHUB_OPTS:tinylcm = "protocol=https;nobranch=1"

# Several hosts (GitHub, GitLab) because that is where TensorFlow's dependencies live; the
# OouraFFT archive is named after its own version, not this recipe's, and carries its
# checksum in the URL (a SRC_URI[...] varflag cannot be gated on the distro override).
# nooelint: oelint.vars.srcuridomains,oelint.vars.downloadfilename
SRC_URI:append:tinylcm = " \
    git://github.com/google/XNNPACK.git;${TINYLCM_GITHUB_OPTS};name=xnnpack;destsuffix=tflite-deps/xnnpack \
    git://github.com/pytorch/cpuinfo.git;${TINYLCM_GITHUB_OPTS};name=cpuinfo;destsuffix=tflite-deps/cpuinfo \
    git://github.com/google/ruy.git;${TINYLCM_GITHUB_OPTS};name=ruy;destsuffix=tflite-deps/ruy \
    git://github.com/google/gemmlowp.git;${TINYLCM_GITHUB_OPTS};name=gemmlowp;destsuffix=tflite-deps/gemmlowp \
    git://github.com/google/farmhash.git;${TINYLCM_GITHUB_OPTS};name=farmhash;destsuffix=tflite-deps/farmhash \
    git://gitlab.com/libeigen/eigen.git;${TINYLCM_GITHUB_OPTS};name=eigen;destsuffix=tflite-deps/eigen \
    git://github.com/jax-ml/ml_dtypes.git;${TINYLCM_GITHUB_OPTS};name=mldtypes;destsuffix=tflite-deps/ml_dtypes \
    git://github.com/Maratyszcza/pthreadpool.git;${TINYLCM_GITHUB_OPTS};name=pthreadpool;destsuffix=tflite-deps/pthreadpool \
    git://github.com/Maratyszcza/FXdiv.git;${TINYLCM_GITHUB_OPTS};name=fxdiv;destsuffix=tflite-deps/fxdiv \
    git://github.com/Maratyszcza/FP16.git;${TINYLCM_GITHUB_OPTS};name=fp16;destsuffix=tflite-deps/fp16 \
    https://github.com/petewarden/OouraFFT/archive/v1.0.tar.gz;name=fft2d;subdir=tflite-deps;downloadfilename=OouraFFT-1.0.tar.gz;sha256sum=5f4dabc2ae21e1f537425d58a49cdca1c49ea11db0d6271e2a4b27e9697548eb \
"
SRCREV_xnnpack:tinylcm = "6b83f69d4938da4dc9ad63c00bd13e9695659a51"
SRCREV_cpuinfo:tinylcm = "8ce83db858065145192c97af90cb668ad72a12e9"
SRCREV_ruy:tinylcm = "690c14c441387a4ea6e07a9ed89657cec8200b92"
SRCREV_gemmlowp:tinylcm = "fda83bdc38b118cc6b56753bd540caa49e570745"
SRCREV_farmhash:tinylcm = "816a4ae622e964763ca0862d9dbd19324a1eaf45"
SRCREV_eigen:tinylcm = "f02856c6406cd36b5d7f1b98e27d85df5af08d06"
SRCREV_mldtypes:tinylcm = "0fa5313b65efe848c5968a15dd37dd220cc29567"
SRCREV_pthreadpool:tinylcm = "4fe0e1e183925bf8cfa6aae24237e724a96479b8"
SRCREV_fxdiv:tinylcm = "b408327ac2a15ec3e43352421954f5b1967701d1"
SRCREV_fp16:tinylcm = "3c54eacb74f6f5e39077300c5564156c424d77ba"
# PV stays the TensorFlow version; the extra revisions must not go into it.
SRCREV_FORMAT:tinylcm = "tensorflow"

# FetchContent takes a declared dependency from FETCHCONTENT_SOURCE_DIR_<NAME> instead of
# downloading it; FULLY_DISCONNECTED makes any dependency we missed a configure error instead
# of a silent download. XNNPACK's own downloads are replaced through its *_SOURCE_DIR inputs.
EXTRA_OECMAKE:append:tinylcm = " \
    -DFETCHCONTENT_FULLY_DISCONNECTED=ON \
    -DFETCHCONTENT_SOURCE_DIR_XNNPACK=${TINYLCM_TFLITE_DEPS}/xnnpack \
    -DFETCHCONTENT_SOURCE_DIR_CPUINFO=${TINYLCM_TFLITE_DEPS}/cpuinfo \
    -DFETCHCONTENT_SOURCE_DIR_RUY=${TINYLCM_TFLITE_DEPS}/ruy \
    -DFETCHCONTENT_SOURCE_DIR_GEMMLOWP=${TINYLCM_TFLITE_DEPS}/gemmlowp \
    -DFETCHCONTENT_SOURCE_DIR_FARMHASH=${TINYLCM_TFLITE_DEPS}/farmhash \
    -DFETCHCONTENT_SOURCE_DIR_EIGEN=${TINYLCM_TFLITE_DEPS}/eigen \
    -DFETCHCONTENT_SOURCE_DIR_ML_DTYPES=${TINYLCM_TFLITE_DEPS}/ml_dtypes \
    -DFETCHCONTENT_SOURCE_DIR_FFT2D=${TINYLCM_TFLITE_DEPS}/OouraFFT-1.0 \
    -DPTHREADPOOL_SOURCE_DIR=${TINYLCM_TFLITE_DEPS}/pthreadpool \
    -DFXDIV_SOURCE_DIR=${TINYLCM_TFLITE_DEPS}/fxdiv \
    -DFP16_SOURCE_DIR=${TINYLCM_TFLITE_DEPS}/fp16 \
    -DXNNPACK_ENABLE_KLEIDIAI=OFF \
"

# Stop with a clear message when a pin is not the revision this TensorFlow (or its XNNPACK)
# asks for, instead of building a library from mismatched sources.
do_configure:prepend:tinylcm() {
    modules=${S}/tensorflow/lite/tools/cmake/modules
    xnn=${TINYLCM_TFLITE_DEPS}/xnnpack/cmake
    for pin in \
        "xnnpack ${SRCREV_xnnpack} $modules/xnnpack.cmake" \
        "cpuinfo ${SRCREV_cpuinfo} $modules/cpuinfo.cmake" \
        "ruy ${SRCREV_ruy} $modules/ruy.cmake" \
        "gemmlowp ${SRCREV_gemmlowp} $modules/gemmlowp.cmake" \
        "farmhash ${SRCREV_farmhash} $modules/farmhash.cmake" \
        "eigen ${SRCREV_eigen} $modules/eigen.cmake" \
        "mldtypes ${SRCREV_mldtypes} $modules/ml_dtypes.cmake" \
        "pthreadpool ${SRCREV_pthreadpool} $xnn/DownloadPThreadPool.cmake" \
        "fxdiv ${SRCREV_fxdiv} $xnn/DownloadFXdiv.cmake" \
        "fp16 ${SRCREV_fp16} $xnn/DownloadFP16.cmake"; do
        set -- $pin
        if [ ! -f "$3" ]; then
            bbfatal "tinylcm: $3 is missing: TensorFlow changed how it fetches $1; review libtensorflow-lite-c_%.bbappend"
        fi
        if ! grep -q "$2" "$3"; then
            bbfatal "tinylcm: SRCREV_$1 = $2 is not what $3 pins ($(grep -Eo '[0-9a-f]{40}' "$3" | head -n 1)): set SRCREV_$1:tinylcm in libtensorflow-lite-c_%.bbappend to it"
        fi
    done
}

# A varflag cannot carry an override, so the distro check happens here: under tinylcm the
# configure task loses the network access the base recipe grants it. Outside the distro this
# function does nothing (which is why the two rules below do not apply).
# nooelint: oelint.task.noanonpython,oelint.vars.noncoreoverride
python () {
    if 'tinylcm' in (d.getVar('DISTROOVERRIDES') or '').split(':'):
        d.delVarFlag('do_configure', 'network')
}
