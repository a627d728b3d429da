// Preloaded with `node -r shim.cjs`: os.platform() answers 'darwin'. @nexrender/core's init()
// looks for After Effects in the default folders of the platform, and on Linux (which has none)
// it crashes even when `binary` is given; on 'darwin' it finds none and takes `binary`.
'use strict';

require('os').platform = () => 'darwin';
