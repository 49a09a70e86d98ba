/*
 * memfit: the whole public API. Include this, or the header of one layer.
 * See DESIGN.md for the layers and the memory model.
 */
#ifndef MEMFIT_H
#define MEMFIT_H

#include "memfit/core.h"
#include "memfit/sys.h"
#include "memfit/monitor.h"
#include "memfit/tensor.h"
#include "memfit/format.h"
#include "memfit/models.h"
#include "memfit/manager.h"
#include "memfit/store.h"
#include "memfit/engines.h"
#include "memfit/server.h"

#endif
