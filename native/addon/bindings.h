// Registration entry points of the addon's binding files (one per native component).
#pragma once

#include <napi.h>

namespace vl3::addon {

void RegisterConvert(Napi::Env env, Napi::Object exports);
void RegisterGguf(Napi::Env env, Napi::Object exports);
void RegisterBench(Napi::Env env, Napi::Object exports);
void RegisterTokenizer(Napi::Env env, Napi::Object exports);
void RegisterMedia(Napi::Env env, Napi::Object exports);
void RegisterModel(Napi::Env env, Napi::Object exports);
void RegisterVideo(Napi::Env env, Napi::Object exports);
void RegisterKernels(Napi::Env env, Napi::Object exports);

}  // namespace vl3::addon
