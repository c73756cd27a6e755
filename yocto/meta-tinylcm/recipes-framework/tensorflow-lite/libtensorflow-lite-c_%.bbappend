# TinyLCM: configure this TensorFlow Lite library without network (the pinned FetchContent
# sources in tensorflow-lite-offline.inc). Included only under the tinylcm distro, so adding
# the layer changes nothing for other distros.
include ${@'tensorflow-lite-offline.inc' if 'tinylcm' in (d.getVar('DISTROOVERRIDES') or '').split(':') else ''}
