# write_if_changed(PATH CONTENT): writes only when the content differs, so an unchanged input
# set does not rebuild what depends on the generated file. Shared by the embed_*.cmake scripts.
function(write_if_changed path content)
  if(EXISTS "${path}")
    file(READ "${path}" old)
    if(old STREQUAL content)
      return()
    endif()
  endif()
  file(WRITE "${path}" "${content}")
endfunction()
