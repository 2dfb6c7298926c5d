-- Argo CD health check of a MastodonMigration (migration.mastodon-operator.io/v1alpha1).
-- It reads the conditions the operator writes for kstatus (docs/health.md), in kstatus's order:
-- a generation not yet acted on or Reconciling=True is at work (Progressing), Stalled=True waits
-- on a person (Degraded: RolledBack, Failed, preflight blocked), Ready=True is done (Healthy),
-- Ready=False for spec.paused is Suspended. Argo CD runs it with the base and table libraries.
local hs = {status = "Progressing", message = "waiting for the operator to write a status"}

local function condition(conditions, kind)
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

-- The phase first, then the condition's own message: the summary `kubectl get` and `describe` show.
local function summary(c)
  local text = c.message or c.reason or ""
  if obj.status.phase ~= nil then
    return obj.status.phase .. ": " .. text
  end
  return text
end

if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local conditions = obj.status.conditions
local reconciling = condition(conditions, "Reconciling")
local stalled = condition(conditions, "Stalled")
local ready = condition(conditions, "Ready")

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed ~= generation then
  hs.message = "the operator has not acted on generation " .. generation .. " yet"
  if isTrue(reconciling) then
    hs.message = summary(reconciling)
  end
  return hs
end
if isTrue(reconciling) then
  hs.message = summary(reconciling)
  return hs
end
if isTrue(stalled) then
  hs.status = "Degraded"
  hs.message = summary(stalled)
  return hs
end
if ready == nil then
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = summary(ready)
  return hs
end
if ready.reason == "Paused" then
  hs.status = "Suspended"
  hs.message = ready.message
  return hs
end
hs.message = summary(ready)
return hs
